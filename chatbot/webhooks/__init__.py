"""Signed webhooks: the generic delivery (signature, address checks, retries with backoff, every attempt recorded)
that lead deliveries and event subscriptions share, the events Parley emits, and the subscriptions to them."""
