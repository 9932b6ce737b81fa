"""API keys of the REST API: created (shown once), stored hashed, scoped to bots, read-only or not, last used,
revoked, and rate-limited per key."""
