"""What people call the outside services operations depend on. The engine knows a dependency
by its name only ("inference:eu-west", "storage"); whoever defines a kind of dependency
registers how to say it ("the AI service in eu-west"), for the pages that show waiting work."""
from collections.abc import Callable

_labels: dict[str, Callable[[str], str]] = {}


def register_label(prefix: str, label: Callable[[str], str]) -> None:
    """`label(rest)` names the dependencies `prefix` + rest, e.g. "inference:" + "eu-west"."""
    _labels[prefix] = label


def label(dependency: str) -> str:
    for prefix, say in sorted(_labels.items(), key=lambda item: -len(item[0])):
        if dependency.startswith(prefix):
            return say(dependency[len(prefix):])
    return f"the service “{dependency}”"


def waiting_message(dependency: str, since) -> str:
    """What a page says of work that waits for `dependency` (since `since`, a datetime)."""
    from django.utils import timezone

    when = timezone.localtime(since).strftime("%H:%M") if since else "a moment ago"
    return (f"Waiting: {label(dependency)} is not answering (since {when}). This continues by "
            "itself when it is back.")
