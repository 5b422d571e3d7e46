"""Interview practice pages: start a session, answer questions, see feedback, retry failures."""
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from interviews.models import InterviewSession, InterviewTurn
from interviews.services import answer_question, ask_next_question, start_session
from operations.api.views import RetryThrottle
from operations.views import page_throttle, retry_from_page


class StartForm(forms.Form):
    topic = forms.CharField(max_length=200, strip=True)
    region = forms.ChoiceField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["region"].choices = [("", "any")] + [
            (region, region) for region in settings.INFERENCE["REGIONS"]]


class AnswerForm(forms.Form):
    answer = forms.CharField(max_length=5000, strip=True)


def _session(request, session_id) -> InterviewSession:
    return get_object_or_404(InterviewSession, pk=session_id, owner=request.user)


def _turn(request, session_id, turn_id) -> InterviewTurn:
    return get_object_or_404(InterviewTurn.objects.select_related("session"), pk=turn_id,
                             session_id=session_id, session__owner=request.user)


def render_turn(request, turn, status=200):
    return render(request, "interviews/session.html#turn", {"turn": turn}, status=status)


@login_required
def session_list(request):
    form = StartForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        session = start_session(request.user, form.cleaned_data["topic"],
                                form.cleaned_data["region"])
        return redirect("interviews:session", session_id=session.pk)
    sessions = InterviewSession.objects.filter(owner=request.user)[:50]
    return render(request, "interviews/list.html", {"form": form, "sessions": sessions})


@login_required
def session_detail(request, session_id):
    session = _session(request, session_id)
    return render(request, "interviews/session.html", {"session": session,
                                                       "turns": session.turns.all()})


@login_required
def turn_detail(request, session_id, turn_id):
    """The turn's panel, polled by htmx while its question or feedback is being made."""
    return render_turn(request, _turn(request, session_id, turn_id))


@login_required
@require_POST
def turn_answer(request, session_id, turn_id):
    turn = _turn(request, session_id, turn_id)
    form = AnswerForm(request.POST)
    if turn.question and not turn.answer and form.is_valid():
        answer_question(turn, form.cleaned_data["answer"])
    if request.htmx:
        return render_turn(request, turn)
    return redirect("interviews:session", session_id=session_id)


@login_required
@require_POST
def next_question(request, session_id):
    ask_next_question(_session(request, session_id))
    return redirect("interviews:session", session_id=session_id)


@login_required
@require_POST
@page_throttle(RetryThrottle)
def turn_retry(request, session_id, turn_id, operation_id):
    """Retry the turn's failed question or feedback; answer with the refreshed turn."""
    turn = _turn(request, session_id, turn_id)
    return retry_from_page(
        request, operation_id,
        render_panel=lambda operation: render_turn(request, turn),
        redirect_to=lambda operation: turn.session.get_absolute_url())
