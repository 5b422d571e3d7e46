"""Every refusal code an API answer can carry, declared where the code is defined (the engine's
in the engine, each workload's in the workload): its HTTP status and an example of what it
says. The OpenAPI schema's examples come from here; `tests/test_refusal_registry.py` fails when
an endpoint answers a code its schema does not show."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    code: str
    status: int
    example: str


_declared: dict[str, Refusal] = {}


def declare(code: str, status: int, example: str) -> str:
    """Register a refusal code and return it (modules name it as a constant). Declaring a code
    again with another status is a mistake: a client acts on the code."""
    existing = _declared.get(code)
    if existing is not None and existing.status != status:
        raise ValueError(f"refusal {code!r} is declared as {existing.status}, not {status}")
    _declared.setdefault(code, Refusal(code, status, example))
    return code


def get(code: str) -> Refusal:
    return _declared[code]


def declared() -> dict[str, Refusal]:
    return dict(_declared)
