from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden, JsonResponse
from django.views.decorators.http import require_GET

from chatbot.ops.health import health_report
from chatbot.ops.metrics import metrics_text


@require_GET
def healthz(request):
    report = health_report()
    return JsonResponse(report, status=503 if report["status"] == "error" else 200)


@require_GET
def metrics(request):
    if settings.METRICS_TOKEN and request.headers.get("Authorization") != f"Bearer {settings.METRICS_TOKEN}":
        return HttpResponseForbidden("a bearer token is required")
    return HttpResponse(metrics_text(), content_type="text/plain; version=0.0.4; charset=utf-8")
