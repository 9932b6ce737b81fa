"""The REST API under /api/v1/ (docs/api.md), made with django-ninja: typed views that generate the OpenAPI document.
Thin, like the dashboard's views: authenticate the key (chatbot.apikeys), check its reach, call one service."""
