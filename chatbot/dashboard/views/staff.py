"""Staff (administrators), and the leads index every staff member with access sees."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET

from chatbot.dashboard import permissions
from chatbot.dashboard.forms import StaffForm
from chatbot.dashboard.permissions import admin_required, staff_required
from chatbot.dashboard.services import staff_member_save
from chatbot.dashboard.views.common import render_page
from chatbot.models import StaffMember


@require_GET
@staff_required
def leads_index(request):
    bots = [bot for bot in permissions.bots_visible(request.user) if permissions.leads_visible(request.user, bot)]
    return render_page(request, "dashboard/leads_index.html", {"bots": bots}, section="leads")


@require_GET
@admin_required
def staff(request):
    members = StaffMember.objects.select_related("user").prefetch_related("bots").order_by("user__username")
    return render_page(request, "dashboard/staff.html", {"members": members}, section="staff")


@admin_required
def staff_edit(request, member_id: int | None = None):
    member = get_object_or_404(StaffMember.objects.select_related("user"), id=member_id) if member_id else None
    initial = (
        {
            "username": member.user.username,
            "display_name": member.display_name,
            "email": member.user.email,
            "role": member.role,
            "bots": list(member.bots.all()),
            "can_view_leads": member.can_view_leads,
        }
        if member
        else {"role": StaffMember.Role.AGENT}
    )
    form = StaffForm(request.POST or None, initial=initial, creating=member is None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        staff_member_save(
            username=member.user.username if member else data["username"],
            role=data["role"],
            bots=list(data["bots"]),
            display_name=data["display_name"],
            can_view_leads=data["can_view_leads"],
            password=data["password"] or None,
            email=data["email"],
        )
        messages.success(request, "Staff member saved.")
        return redirect("dashboard:staff")
    return render_page(request, "dashboard/staff_form.html", {"form": form, "member": member}, section="staff")
