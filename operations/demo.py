"""Demo data for the demo user. Each app registers a seeder in its `AppConfig.ready()`, so
`manage.py seed_demo` (and `manage.py run`) seeds every installed workload without the engine
importing any of them. A seeder must be safe to call again: it seeds what is not there yet."""
import logging
from collections.abc import Callable

log = logging.getLogger("rebound.demo")
_seeders: list[Callable] = []


def register(seeder: Callable) -> Callable:
    """Decorator: `@demo.register` on a function `seeder(user)`."""
    if seeder not in _seeders:
        _seeders.append(seeder)
    return seeder


def seed(user) -> None:
    """Run every registered seeder for `user`, in the order the apps are installed."""
    for seeder in _seeders:
        log.info("seeding demo data: %s.%s", seeder.__module__, seeder.__name__)
        seeder(user)


@register
def seed_operations(user):
    """Something finished, something that recovers by itself, something that needs a click."""
    from operations.models import Operation
    from operations.services import submit

    if Operation.objects.filter(owner=user, kind__startswith="diagnostics.").exists():
        return
    submit("diagnostics.noop", user, {})
    submit("diagnostics.flaky", user, {"fail_attempts": [1, 2]})
    submit("diagnostics.flaky", user,
           {"fail_attempts": [1], "error": "permanent", "succeed_on_retry": 1})
    submit("diagnostics.sleep", user, {"seconds": 20})
