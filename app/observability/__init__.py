"""Logs, metrics and traces of the serving process."""
