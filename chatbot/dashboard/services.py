"""Writes of the dashboard itself: its staff. (What staff do in a conversation is chatbot.chat.staff; approved
answers chatbot.answers.approved; knowledge sources chatbot.bots.sources.)"""

import logging

from django.contrib.auth import get_user_model
from django.db import transaction

from chatbot.models import Bot, StaffMember
from chatbot.realtime.protocol import access_changed_event, staff_user_group
from chatbot.realtime.relay import relay

logger = logging.getLogger(__name__)


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
    # Dashboards this member has open close and reconnect with the access saved here.
    transaction.on_commit(lambda: staff_access_changed(user_id=user.id))
    return member


def staff_access_changed(*, user_id: int) -> None:
    """Tell the dashboards a staff member has open that their access changed (they check it and close)."""
    try:
        relay().group_send(staff_user_group(user_id), access_changed_event())
    except Exception:  # the periodic re-check closes them anyway
        logger.exception("could not tell the dashboards of user %s that their access changed", user_id)
