"""Insights from the bot's own model, for staff: a one-line summary and a sentiment per finished conversation, and
topics (clusters of similar visitor questions, labelled by the model). Written by a Celery job, nightly and on
demand, within a token budget and never while a visitor waits; shown on the analytics page (docs/insights.md)."""
