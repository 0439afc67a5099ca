"""Outbound calls: the egress policy, per-host policies, and the HTTP exchange that the http,
graphql (and later mcp) nodes share."""
