"""Retry chains read cheaply: the latest of many chains in one query, a whole chain in two,
and the derived retry fields the workloads show."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from operations import runner
from operations.api.serializers import ChainFieldsMixin, ChainHistoryMixin
from operations.chains import history_of, latest_of
from operations.models import Channel, Status
from operations.services import retry_operation, submit
from tests.running import make_due

pytestmark = pytest.mark.django_db


def failing_chain(user, retries: int, *, last_succeeds=False):
    """A flaky operation that fails its first attempt for good, retried `retries` times (each
    retry fails too, unless `last_succeeds`)."""
    first = submit("diagnostics.flaky", user, {
        "fail_attempts": [1], "error": "permanent",
        "succeed_on_retry": retries if last_succeeds else 99})
    runner.run(first.pk)
    current = first
    for n in range(retries):
        current = retry_operation(current.pk, by=user, channel=Channel.API, reason=f"try {n + 1}")
        runner.run(current.pk)
    return first, current


def test_latest_of_many_chains_is_one_query(user):
    chains = [failing_chain(user, n) for n in (0, 1, 3, 2)]
    with CaptureQueriesContext(connection) as queries:
        read = latest_of([first.pk for first, _ in chains])
    assert len(queries) == 1
    for first, latest in chains:
        assert read[first.pk].root.pk == first.pk and read[first.pk].latest.pk == latest.pk


def test_a_chain_read_whole_is_two_queries_with_every_attempt_oldest_first(user):
    first, _ = failing_chain(user, 2)
    with CaptureQueriesContext(connection) as queries:
        chain = history_of(first.pk)
        history = chain.retry_history
    assert len(queries) == 2
    assert [(a.operation.retry_number, a.number) for a in chain.attempts] == [
        (0, 1), (1, 1), (2, 1)]
    assert [entry["reason"] for entry in history] == ["try 1", "try 2"]
    assert [entry["by"] for entry in history] == ["alice", "alice"]


class Row:
    """A workload row as the serializers see it: something with a `chain`."""

    def __init__(self, chain):
        self.chain = chain


def fields(chain):
    return ChainFieldsMixin(Row(chain)).data


def test_derived_fields_with_no_retry(user):
    first, _ = failing_chain(user, 0)
    data = fields(latest_of([first.pk])[first.pk])
    assert data["retry_count"] == 0 and data["max_retries"] == 3
    assert data["last_retry_at"] is None
    assert data["original_error"]["code"] == "invalid_input"


def test_derived_fields_after_one_retry(user):
    first, latest = failing_chain(user, 1)
    data = fields(latest_of([first.pk])[first.pk])
    assert data["retry_count"] == 1
    assert data["last_retry_at"] is not None
    first.refresh_from_db()
    assert data["original_error"] == {"code": "invalid_input", "message": first.error_message}


def test_derived_fields_after_three_retries_keep_the_original_error(user):
    first, latest = failing_chain(user, 3, last_succeeds=True)
    latest.refresh_from_db()
    assert latest.status == Status.COMPLETED
    row = Row(history_of(first.pk))
    data = {**ChainFieldsMixin(row).data, **ChainHistoryMixin(row).data}
    assert data["retry_count"] == 3
    assert data["original_error"]["code"] == "invalid_input"
    assert [entry["outcome"] for entry in data["retry_history"]] == [
        "failed", "failed", "completed"]
    assert [entry["channel"] for entry in data["retry_history"]] == ["api"] * 3
    assert len(data["attempts"]) == 4


def test_the_original_error_is_the_first_failure_even_while_a_retry_runs(user):
    first, _ = failing_chain(user, 0)
    child = retry_operation(first.pk, by=user, channel=Channel.WEB)
    child.claim("host:1:1")
    chain = latest_of([first.pk])[first.pk]
    assert chain.latest.pk == child.pk and chain.latest.status == Status.PROCESSING
    assert chain.original_error["code"] == "invalid_input"


def test_an_automatic_retry_in_flight_is_not_an_original_error(user):
    first = submit("diagnostics.flaky", user, {"fail_attempts": [1]})
    runner.run(first.pk)
    make_due(first)
    assert latest_of([first.pk])[first.pk].original_error is None  # not failed (yet)
