from django.http import JsonResponse
from django.shortcuts import render

from chatbot.health import health_report


def home(request):
    return render(request, "home.html")


def healthz(request):
    report = health_report()
    return JsonResponse(report, status=503 if report["status"] == "error" else 200)
