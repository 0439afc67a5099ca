"""The HTTP edge: parse requests, call the services, shape the answers (problem+json errors)."""
