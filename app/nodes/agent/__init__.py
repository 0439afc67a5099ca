"""The ``agent`` node: a model calling tools over durable turns."""
