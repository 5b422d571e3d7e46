"""The registry of operation kinds: a name, the handler that does the work, its retry policy."""
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from operations.retry_policy import RetryPolicy


@dataclass(frozen=True)
class Completion:
    """What a handler may return instead of a bare result: `write()` runs in the transaction
    of the fenced completion, so the handler's output exists exactly when the operation
    completed, and a zombie or a duplicate delivery writes nothing."""

    result: Any
    write: Callable[[], None]


@dataclass(frozen=True)
class Kind:
    name: str
    handler: Callable[..., Any]
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    # Preflight for manual retry: is the stored input still there and unchanged?
    input_available: Callable[[dict], bool] = lambda input: True
    label: str = ""
    # Continuations: run once, after the final state is committed, with the operation.
    on_success: Callable[[Any], None] | None = None
    on_failure: Callable[[Any], None] | None = None
    # The outside service an operation of this kind needs, from its input ("inference:us-east");
    # a call site may name it instead. Its gate decides whether the operation runs or waits.
    dependency: Callable[[dict], str] | None = None
    # Quiet kinds tell nobody of their own ends: no owner notification, no events (a webhook
    # delivery that fails is shown on its endpoint's page, not announced by another webhook).
    quiet: bool = False
    # How long an operation of this kind may wait for its dependency before it fails
    # (None: REBOUND_WAIT_LIMIT).
    wait_limit: float | None = None

    @property
    def title(self) -> str:
        return self.label or self.name


_registry: dict[str, Kind] = {}


def register(name: str, *, policy: RetryPolicy | None = None, label: str = "",
             input_available: Callable[[dict], bool] | None = None,
             on_success: Callable | None = None, on_failure: Callable | None = None,
             dependency: Callable[[dict], str] | None = None, quiet: bool = False,
             wait_limit: float | None = None):
    """Decorator: `@register("imports.full_pass", policy=RetryPolicy(max_attempts=5))`.

    `on_success(operation)` / `on_failure(operation)` run once after the operation completed
    or failed for good, in a transaction of their own; a step they start should be submitted
    with a `dedupe_key`, so it exists once however often it is asked for."""

    def decorate(handler):
        kind = Kind(name=name, handler=handler, policy=policy or RetryPolicy(), label=label,
                    input_available=input_available or (lambda input: True),
                    on_success=on_success, on_failure=on_failure, dependency=dependency,
                    quiet=quiet, wait_limit=wait_limit)
        _registry[name] = kind
        return handler

    return decorate


def _unregistered(context):
    from operations.errors import PermanentError

    raise PermanentError("internal_error",
                         f"no operation kind named {context.operation.kind!r} is registered")


def find(name: str) -> Kind:
    """The registered kind, or a stand-in for one removed from the code while operations of
    it still exist: it shows the name, fails permanently when run, and cannot be retried."""
    return _registry.get(name) or Kind(name=name, handler=_unregistered,
                                       input_available=lambda input: False)


def get(name: str) -> Kind:
    try:
        return _registry[name]
    except KeyError:
        raise LookupError(f"no operation kind named {name!r} is registered") from None


def names() -> list[str]:
    """Every registered kind's name, sorted."""
    return sorted(_registry)
