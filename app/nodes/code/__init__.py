"""The ``code`` node: an expression (in-process), Python (a limited child process) or a
WebAssembly module (wasmtime, in a worker thread)."""
