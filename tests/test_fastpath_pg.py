"""The hot path's prepared statements on PostgreSQL: a prepared statement may keep one generic
plan for its connection's life, made while the tables were small, so each must reach its rows
by their keys whatever the statistics said at the time; and a submission bound on the server
writes the row Django's own insert would."""
import json

import pytest
from django.db import connection

from operations import fastpath, runner
from operations.models import Attempt, Operation, Status
from operations.services import submit

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def scans(plan, table: str) -> set[str]:
    """How the plan reads `table`: its scan nodes' types."""
    found = {plan["Node Type"]} if plan.get("Relation Name") == table and "Scan" in plan[
        "Node Type"] else set()
    for child in plan.get("Plans", []):
        found |= scans(child, table)
    return found


def generic_plan(fragment: str) -> dict:
    """The generic plan of the prepared statement on this connection whose text holds
    `fragment`, as PostgreSQL would keep it (its parameters do not shape it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, cardinality(parameter_types) FROM pg_prepared_statements "
                       "WHERE statement LIKE %s", [f"%{fragment}%"])
        name, count = cursor.fetchone()
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        try:
            cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE {name}({', '.join(['NULL'] * count)})")
            plan = cursor.fetchone()[0]
            return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
        finally:
            cursor.execute("RESET plan_cache_mode")


def test_a_completion_finds_its_attempt_by_key_in_the_kept_plan(user):
    operations = [submit("diagnostics.noop", user, {}) for _ in range(3)]
    claimed = fastpath.claim_next("host:1:1")
    won, following, looked = fastpath.complete(claimed, claimed.lease_token,
                                               claimed.attempt_count, None,
                                               then_claim_for="host:1:1")
    assert won and following is not None and looked
    plan = generic_plan("finished AS")
    # Was a sequential scan: every completion read the whole Attempt table.
    assert scans(plan, "operations_attempt") <= {"Index Scan", "Index Only Scan"}, plan
    assert scans(plan, "operations_attempt"), plan
    fastpath.complete(following, following.lease_token, following.attempt_count, None)
    assert Attempt.objects.filter(outcome="succeeded").count() == 2
    assert Operation.objects.filter(status=Status.PENDING).get().pk in {o.pk for o in operations}


def test_a_submission_bound_on_the_server_writes_what_the_orm_would(user):
    operation = submit("diagnostics.noop", user, {"n": 1}, dedupe_key="step-1")
    stored = Operation.objects.get(pk=operation.pk)
    for field in Operation._meta.concrete_fields:
        assert getattr(operation, field.attname) == getattr(stored, field.attname), field.name
    assert stored.enqueued_at is not None and stored.status == Status.PENDING
    assert stored.triggered_by_id == user.pk and stored.input == {"n": 1}
    assert submit("diagnostics.noop", user, {"n": 2}, dedupe_key="step-1").pk == operation.pk
    operation.delete()  # a saved instance, as the ORM's would be: it can be deleted, run
    again = submit("diagnostics.noop", user, {})
    assert runner.run(again.pk) == "completed"


def test_a_worker_whose_completion_found_the_queue_empty_does_not_look_again_at_once(
        user, settings, monkeypatch):
    """The completion tried to claim the next operation in the same statement; a claim right
    after it would find what it found. The worker's one more look is the last one before it
    sleeps."""
    settings.REBOUND = {**settings.REBOUND, "DRAIN_SECONDS": 5.0}
    operation = submit("diagnostics.noop", user, {})
    claims, claim = [], fastpath.claim_next

    def counted(holder, pk=None):
        claims.append(pk)
        return claim(holder, pk)

    monkeypatch.setattr(fastpath, "claim_next", counted)
    assert runner.run(operation.pk) == "completed"
    assert claims == [operation.pk, None]  # was [pk, None, None]
