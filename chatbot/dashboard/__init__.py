"""The staff dashboard at /dashboard/: conversations, live takeover, bots and knowledge, quality, analytics."""
