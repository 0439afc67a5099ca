"""Compiling a workflow document into a Plan: validation, expressions, templates, topology.

Pure and synchronous; it never imports :mod:`app.engine.run`.
"""
