"""Who may see and do what in the dashboard.

Administrators (and superusers) manage bots and staff and see every bot; agents see and take over the
conversations of the bots they are assigned to. Leads are visible to administrators and to agents of the bot
who have `can_view_leads`.
"""

from functools import wraps
from typing import Literal

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from chatbot.models import Bot, Conversation, StaffMember

Role = Literal["admin", "agent"]
LOGIN_URL = "/dashboard/login/"


def staff_member_of(user) -> StaffMember | None:
    if not user.is_authenticated:
        return None
    try:
        return user.staff_member
    except StaffMember.DoesNotExist:
        return None


def staff_role(user) -> Role | None:
    """'admin', 'agent', or None for someone who is not staff at all."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return "admin"
    member = staff_member_of(user)
    return member.role if member is not None else None


def is_admin(user) -> bool:
    return staff_role(user) == "admin"


def bots_visible(user) -> QuerySet[Bot]:
    role = staff_role(user)
    if role == "admin":
        return Bot.objects.all()
    if role == "agent":
        return Bot.objects.filter(staff_members__user=user)
    return Bot.objects.none()


def bot_ids_visible(user) -> set[int]:
    return set(bots_visible(user).values_list("id", flat=True))


def conversation_visible(user, conversation: Conversation) -> bool:
    return is_admin(user) or conversation.bot_id in bot_ids_visible(user)


def leads_visible(user, bot: Bot) -> bool:
    role = staff_role(user)
    if role == "admin":
        return True
    if role != "agent":
        return False
    member = staff_member_of(user)
    return bool(member.can_view_leads) and member.bots.filter(id=bot.id).exists()


def bot_for(user, slug: str) -> Bot:
    """The bot with `slug` if the user may see it; 404 otherwise (not 403: its existence is not the user's business)."""
    bot = bots_visible(user).filter(slug=slug).first()
    if bot is None:
        raise Http404("No such bot")
    return bot


def staff_required(view):
    """Logged-in staff (any role); anonymous users go to the login page, other users get 403."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), LOGIN_URL)
        if staff_role(request.user) is None:
            raise PermissionDenied("You are not a member of the staff.")
        return view(request, *args, **kwargs)

    return wrapped


def admin_required(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), LOGIN_URL)
        if not is_admin(request.user):
            raise PermissionDenied("Only administrators can do this.")
        return view(request, *args, **kwargs)

    return wrapped
