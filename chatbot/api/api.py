"""The API object: its routers under /api/v1/, key authentication, JSON errors, the OpenAPI document and the
browsable docs (Swagger UI served from django-ninja's own static files: no CDN, no inline script)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from ninja import NinjaAPI
from ninja.errors import ValidationError

from chatbot.api import ask, bots, conversations, knowledge, leads, webhooks
from chatbot.api.auth import ApiKeyAuth, RateLimited

api = NinjaAPI(
    title="Parley API",
    version="1",
    description=(
        "Parley's REST API: ask a bot, read conversations and leads, manage knowledge, bot settings, approved "
        "answers and event webhooks. Authenticate with `Authorization: Bearer <API key>`. See docs/api.md."
    ),
    urls_namespace="api-v1",
    auth=ApiKeyAuth(),
    docs_url="/docs",
    openapi_url="/openapi.json",
)
for module in (ask, bots, conversations, leads, knowledge, webhooks):
    api.add_router("", module.router)


@api.exception_handler(RateLimited)
def rate_limited(request: HttpRequest, error: RateLimited) -> JsonResponse:
    response = JsonResponse(
        {"detail": f"Too many requests for this API key: retry in {error.retry_after_s} s."}, status=429
    )
    response["Retry-After"] = str(error.retry_after_s)
    return response


@api.exception_handler(ValidationError)
def invalid(request: HttpRequest, error: ValidationError) -> JsonResponse:
    errors: dict[str, list[str]] = {}
    for problem in error.errors:
        # ("body", "<parameter>", "temperature") → "temperature"; the parameter's name means nothing to a caller.
        location = [str(part) for part in problem.get("loc", ())][2:] or [str(p) for p in problem.get("loc", ())][-1:]
        errors.setdefault(".".join(location) or "request", []).append(problem.get("msg", "invalid"))
    return JsonResponse({"detail": "The request is not valid.", "errors": errors}, status=400)
