from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from operations import demo

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "rebound-demo"


class Command(BaseCommand):
    help = "Create the demo user and every installed workload's demo data (what is missing)."

    def handle(self, *args, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True,
                                              "email": "demo@rebound.invalid"})
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        demo.seed(user)
        self.stdout.write(f"Demo user: {DEMO_USERNAME} / password: {DEMO_PASSWORD}")
