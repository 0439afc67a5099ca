"""What the AI nodes share: provider clients, error mapping, limits, the cache and prices."""
