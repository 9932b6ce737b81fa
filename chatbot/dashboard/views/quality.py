"""What the bots could not answer, and the approved answers that fill the gaps."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from chatbot.answers.approved import approved_answer_add, approved_answer_delete
from chatbot.dashboard import permissions, quality
from chatbot.dashboard.forms import ApprovedAnswerForm
from chatbot.dashboard.permissions import staff_required
from chatbot.dashboard.views.common import render_page
from chatbot.models import ApprovedAnswer

REASON_LABELS = {"no_passage": "No relevant passage", "thumbs_down": "Thumbs down", "asked_human": "Asked for a person"}


@require_GET
@staff_required
def quality_page(request):
    bots = permissions.bots_visible(request.user)
    groups = quality.unanswered_groups(bots=bots)
    bot_names = {bot.id: bot for bot in bots}
    for group in groups:
        group.bot = bot_names.get(group.bot_id)
        group.reason_labels = [REASON_LABELS[r] for r in group.reasons]
    answers = ApprovedAnswer.objects.filter(bot__in=bots).select_related("bot", "created_by")[:100]
    return render_page(
        request,
        "dashboard/quality.html",
        {"groups": groups, "approved_answers": answers, "form": ApprovedAnswerForm(initial={"add_faq": True})},
        section="quality",
    )


@require_POST
@staff_required
def approved_answer_create(request):
    form = ApprovedAnswerForm(request.POST)
    if not form.is_valid():
        messages.error(request, "An answer needs a question and a text.")
        return redirect("dashboard:quality")
    bot = permissions.bot_for(request.user, form.cleaned_data["bot"])
    approved_answer_add(
        bot=bot,
        question=form.cleaned_data["question"],
        answer=form.cleaned_data["answer"],
        user=request.user,
        add_faq=form.cleaned_data["add_faq"],
    )
    messages.success(request, "Answer saved: the bot now gives it to questions like this one.")
    return redirect("dashboard:quality")


@require_POST
@staff_required
def approved_answer_remove(request, answer_id: int):
    approved = get_object_or_404(ApprovedAnswer, id=answer_id, bot__in=permissions.bots_visible(request.user))
    approved_answer_delete(approved_answer=approved)
    messages.success(request, "Approved answer deleted.")
    # Back to the page the form was on, if it is one of ours: never to another site (an open redirect).
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("dashboard:quality")
