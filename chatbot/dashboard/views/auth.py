"""Signing in and out of the dashboard."""

from django.contrib.auth import views as auth_views


class LoginView(auth_views.LoginView):
    template_name = "dashboard/login.html"
    redirect_authenticated_user = True
    next_page = "/dashboard/"


class LogoutView(auth_views.LogoutView):
    next_page = "/dashboard/login/"
