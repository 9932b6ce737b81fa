"""Writes of the dashboard itself: its staff. (What staff do in a conversation is chatbot.chat.staff; approved
answers chatbot.answers.approved; knowledge sources chatbot.bots.sources.)"""

from django.contrib.auth import get_user_model
from django.db import transaction

from chatbot.models import Bot, StaffMember


@transaction.atomic
def staff_member_save(
    *,
    username: str,
    role: str,
    bots: list[Bot] | None = None,
    display_name: str = "",
    can_view_leads: bool = False,
    password: str | None = None,
    email: str = "",
) -> StaffMember:
    """Create or update a dashboard user with a role; `password` (when given) is set."""
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username, defaults={"email": email})
    if password:
        user.set_password(password)
        user.save(update_fields=["password"])
    member, _ = StaffMember.objects.update_or_create(
        user=user, defaults={"role": role, "display_name": display_name, "can_view_leads": can_view_leads}
    )
    if bots is not None:
        member.bots.set(bots)
    return member
