"""Dashboard users' roles."""

from django.conf import settings
from django.db import models


class StaffMember(models.Model):
    """A dashboard user's role. Administrators manage bots and staff; agents work the bots they are assigned to."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Administrator"
        AGENT = "agent", "Agent"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_member")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.AGENT)
    display_name = models.CharField(max_length=100, blank=True, help_text="The name visitors see.")
    bots = models.ManyToManyField("chatbot.Bot", blank=True, related_name="staff_members")
    can_view_leads = models.BooleanField(default=False, help_text="Agents: may see the leads of their bots.")

    def __str__(self) -> str:
        return self.display_name or self.user.get_username()


def staff_display_name(user) -> str:
    """The name visitors see for a staff member: their display name, else their first name, else "" (the widget
    then says "Support agent" in the visitor's language). Never their login: it is half of their credentials."""
    try:
        member = user.staff_member
    except (StaffMember.DoesNotExist, AttributeError):
        member = None
    if member is not None and member.display_name:
        return member.display_name
    return user.get_short_name() or ""


def staff_colleague_name(user) -> str:
    """The name colleagues see in the dashboard: the visitors' one, else the login."""
    return staff_display_name(user) or user.get_username()
