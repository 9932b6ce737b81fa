"""The dashboard's pages, one module per section. Thin: authorise (chatbot.dashboard.permissions), parse, call one
service or selector, render."""
