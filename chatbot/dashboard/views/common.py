"""What every dashboard page shares."""

from django.shortcuts import render

from chatbot.dashboard import permissions
from chatbot.models import staff_colleague_name


def render_page(request, template: str, context: dict, *, section: str, status: int = 200):
    user = request.user
    context = {
        **context,
        "section": section,
        "role": permissions.staff_role(user),
        "is_admin": permissions.is_admin(user),
        "me": staff_colleague_name(user) if user.is_authenticated else "",
    }
    return render(request, template, context, status=status)
