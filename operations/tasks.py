"""Tasks are doorways: django-q2 delivers an id, the engine does the rest."""
from operations import runner


def run_operation(operation_id: str) -> str:
    """Run one delivery of operation `operation_id` ("": a wake-up, drain the queue)."""
    return runner.run(operation_id or None)
