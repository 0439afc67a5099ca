;; The module in examples/code_wasm.json (base64 of `wasmtime.wat2wasm` of this file).
;; A WASI command: reads its inputs (JSON) from stdin and writes {"bytes": N, "input": <inputs>}
;; to stdout, N being the length of the JSON it read (at most 130000 bytes).
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; 0: one iovec for reading, 8: bytes read, 12: bytes written, 16: prefix, 32-52: digits,
  ;; 64: separator, 96: four iovecs for writing, 128: the input, then "}".
  (data (i32.const 16) "{\"bytes\":")
  (data (i32.const 64) ",\"input\":")
  (func $read_all (result i32)
    (local $total i32)
    (block $done
      (loop $more
        (i32.store (i32.const 0) (i32.add (i32.const 128) (local.get $total)))
        (i32.store (i32.const 4) (i32.sub (i32.const 130000) (local.get $total)))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br_if $done (i32.eqz (i32.load (i32.const 8))))
        (local.set $total (i32.add (local.get $total) (i32.load (i32.const 8))))
        (br $more)))
    (local.get $total))
  (func (export "_start")
    (local $n i32) (local $pos i32) (local $v i32)
    (local.set $n (call $read_all))
    (i32.store8 (i32.add (i32.const 128) (local.get $n)) (i32.const 125))
    (local.set $pos (i32.const 52))
    (local.set $v (local.get $n))
    (loop $digit
      (local.set $pos (i32.sub (local.get $pos) (i32.const 1)))
      (i32.store8 (local.get $pos) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $digit (local.get $v)))
    (i32.store (i32.const 96) (i32.const 16))
    (i32.store (i32.const 100) (i32.const 9))
    (i32.store (i32.const 104) (local.get $pos))
    (i32.store (i32.const 108) (i32.sub (i32.const 52) (local.get $pos)))
    (i32.store (i32.const 112) (i32.const 64))
    (i32.store (i32.const 116) (i32.const 9))
    (i32.store (i32.const 120) (i32.const 128))
    (i32.store (i32.const 124) (i32.add (local.get $n) (i32.const 1)))
    ;; One iovec per call: a write may take only the first iovec of several.
    (drop (call $fd_write (i32.const 1) (i32.const 96) (i32.const 1) (i32.const 12)))
    (drop (call $fd_write (i32.const 1) (i32.const 104) (i32.const 1) (i32.const 12)))
    (drop (call $fd_write (i32.const 1) (i32.const 112) (i32.const 1) (i32.const 12)))
    (drop (call $fd_write (i32.const 1) (i32.const 120) (i32.const 1) (i32.const 12)))))
