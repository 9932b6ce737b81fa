"""The Content-Security-Policy of Parley's pages (django-csp, configured by CONTENT_SECURITY_POLICY in settings).

The chat page sets its own policy (chatbot.chat.widget.chat_page_csp: the bot's allowed sites may frame it), which the
middleware leaves alone. Every other page gets the strict one from settings, plus the websocket of the host the
page was served from: `'self'` in connect-src covers ws:/wss: of the same host only in browsers that follow CSP
Level 3, and the dashboard is live over a websocket."""

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()
        except DisallowedHost:
            return parts
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), f"ws://{host}", f"wss://{host}"]
        parts.update = update
        return parts
