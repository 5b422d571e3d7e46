import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from operations.models import Attempt, Operation, Status, Trigger


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-secret-123")


class OperationFactory(factory.django.DjangoModelFactory):
    """A pending diagnostics.flaky operation; traits give the other states."""

    class Meta:
        model = Operation

    kind = "diagnostics.flaky"
    owner = factory.SubFactory(UserFactory)
    input = factory.LazyFunction(dict)
    triggered_by = factory.SelfAttribute("owner")
    enqueued_at = factory.LazyFunction(timezone.now)

    class Params:
        failed = factory.Trait(
            status=Status.FAILED, attempt_count=1, error_code="ai_unavailable",
            error_message="AI service unavailable. It is usually back within minutes.",
            error_detail="HTTP 503 from 10.0.0.7", finished_at=factory.LazyFunction(timezone.now),
            first_attempt=factory.RelatedFactory(
                "tests.factories.AttemptFactory", factory_related_name="operation",
                outcome="permanent", error_code="ai_unavailable"))
        completed = factory.Trait(status=Status.COMPLETED, attempt_count=1, result={"ok": True})
        scheduled = factory.Trait(status=Status.RETRY_SCHEDULED, attempt_count=1,
                                  next_trigger=Trigger.AUTO,
                                  next_attempt_at=factory.LazyFunction(timezone.now))


class AttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Attempt

    number = 1
    trigger = Trigger.FIRST
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)
