from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from operations.services import submit

SAMPLE = settings.BASE_DIR / "imports" / "demo" / "chatgpt_real_2023-06_pkuppens_subset.conversations.json"

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "rebound-demo"


class Command(BaseCommand):
    help = "Create the demo user and demo operations (once)."

    def handle(self, *args, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True})
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        if not user.operations.exists():
            seed_operations(user)
            seed_export(user)
        self.stdout.write(f"Demo user: {DEMO_USERNAME} / password: {DEMO_PASSWORD}")


def seed_operations(user):
    """Something finished, something that recovers by itself, something that needs a click."""
    submit("diagnostics.noop", user, {})
    submit("diagnostics.flaky", user, {"fail_attempts": [1, 2]})
    submit("diagnostics.flaky", user,
           {"fail_attempts": [1], "error": "permanent", "succeed_on_retry": 1})
    submit("diagnostics.sleep", user, {"seconds": 20})


def seed_export(user):
    """A real stored export whose full pass fails part-way (an injected fault on the first run
    only), so "Retry deep memory" can be clicked and resumes from the checkpoint."""
    from django.core.files import File

    from imports.passes import accept_upload

    with open(SAMPLE, "rb") as sample:
        accept_upload(user, File(sample), name="chatgpt-export-2023-06.json",
                      fault={"at": 25, "error": "permanent", "retry_numbers": [0]})
