"""Logs (and, later, metrics and traces) of the serving process."""
