"""The interviews demo: a session in region `demo-flaky`, whose AI calls fail half the time, so
automatic retries (and perhaps a Retry button) can be watched."""
from interviews.models import InterviewSession
from interviews.services import start_session


def seed(user):
    if InterviewSession.objects.filter(owner=user).exists():
        return
    start_session(user, "Designing a retry system", region="demo-flaky")
