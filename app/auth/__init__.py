"""Who is calling and what they may do: API keys, scopes, the caller (principal), OIDC tokens,
stream tickets, the audit log and stored credentials. Pure pieces only import the domain; the
store and the services hold the rows and the caches."""
