"""Bulk retry: one service on top of the single retry, a report of what it did and skipped,
children staggered so a provider is never stampeded; the API and the admin use it."""
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from operations.models import Channel, Operation, Status
from operations.services import retry_failed
from tests.factories import OperationFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def mixed(user):
    """Two retryable failures and one of each reason to skip."""
    retryable = [OperationFactory(owner=user, failed=True),
                 OperationFactory(owner=user, failed=True, error_code="ai_timeout")]
    completed = OperationFactory(owner=user, completed=True)
    retried = OperationFactory(owner=user, failed=True)
    OperationFactory(owner=user, parent=retried, root=retried, retry_number=1, is_retry=True)
    at_limit = OperationFactory(owner=user, failed=True, retry_number=3, is_retry=True)
    input_gone = OperationFactory(owner=user, failed=True, kind="tests.needs_input",
                                  input={"present": False})
    return {"retryable": retryable, "all": [*retryable, completed, retried, at_limit, input_gone]}


def test_a_dry_run_reports_and_changes_nothing(user, mixed):
    before = Operation.objects.count()
    report = retry_failed(mixed["all"], by=user, channel=Channel.API, dry_run=True)
    assert report["eligible"] == 2 and report["retried"] == []
    assert Operation.objects.count() == before


def test_each_skip_reason_is_counted_and_everything_adds_up(user, mixed):
    report = retry_failed(mixed["all"], by=user, channel=Channel.API)
    assert report["skipped"] == {"retry_limit_reached": 1, "already_retried": 1,
                                 "input_missing": 1, "not_failed": 1}
    assert report["eligible"] == len(report["retried"]) == 2
    assert report["eligible"] + sum(report["skipped"].values()) == len(mixed["all"])
    assert report["by_error"] == {"ai_unavailable": 4, "ai_timeout": 1}
    children = Operation.objects.filter(pk__in=report["retried"])
    assert {c.parent_id for c in children} == {op.pk for op in mixed["retryable"]}


def test_a_dry_run_and_the_real_run_agree(user, mixed):
    dry = retry_failed(mixed["all"], by=user, channel=Channel.API, dry_run=True)
    real = retry_failed(mixed["all"], by=user, channel=Channel.API)
    assert (dry["eligible"], dry["skipped"], dry["by_error"]) == (
        real["eligible"], real["skipped"], real["by_error"])


def test_children_are_staggered_at_the_configured_rate(settings, user):
    settings.REBOUND = {**settings.REBOUND, "BULK_RETRY_RATE": 4.0}
    failed = [OperationFactory(owner=user, failed=True) for _ in range(5)]
    report = retry_failed(failed, by=user, channel=Channel.WEB, reason="provider is back")
    children = [Operation.objects.get(pk=pk) for pk in report["retried"]]
    assert children[0].status == Status.PENDING  # the first starts at once
    waiting = children[1:]
    assert all(c.status == Status.RETRY_SCHEDULED for c in waiting)
    starts = [c.next_attempt_at for c in waiting]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    assert all(gap >= 0.245 for gap in gaps)  # 4 per second at most (clock reads differ by <5 ms)
    assert starts[-1] - timezone.now() <= timedelta(seconds=1.1)
    assert {(c.retry_reason, c.channel, c.is_retry) for c in children} == {
        ("provider is back", "web", True)}


def test_someone_elses_operation_is_never_retried(user, other_user):
    theirs = OperationFactory(owner=other_user, failed=True)
    report = retry_failed([theirs], by=user, channel=Channel.API)
    assert report["retried"] == [] and not Operation.objects.filter(parent=theirs).exists()


# --- the API -----------------------------------------------------------------------------------

URL = "/api/v1/operations/retry-failed"


def test_api_dry_run_answers_200_with_the_report_and_creates_nothing(api, user, mixed):
    before = Operation.objects.count()
    response = api.post(URL, {"dry_run": True}, format="json")
    assert response.status_code == 200
    body = response.json()
    # The API considers failed operations not retried yet: here the two retryable ones, the
    # one at its limit and the one whose input is gone.
    assert body["eligible"] == 2 and body["dry_run"] is True and body["retried"] == []
    assert body["skipped"]["retry_limit_reached"] == 1 and body["skipped"]["input_missing"] == 1
    assert Operation.objects.count() == before


def test_api_retry_answers_202_and_filters_by_kind_error_and_time(api, user):
    old = OperationFactory(owner=user, failed=True, error_code="ai_timeout")
    Operation.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(hours=2))
    new_timeout = OperationFactory(owner=user, failed=True, error_code="ai_timeout")
    OperationFactory(owner=user, failed=True, error_code="ai_unavailable")
    OperationFactory(owner=user, failed=True, kind="diagnostics.sleep", error_code="ai_timeout")
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    response = api.post(URL, {"kind": "diagnostics.flaky", "error_code": "ai_timeout",
                              "failed_after": since, "reason": "timeouts fixed"}, format="json")
    assert response.status_code == 202
    assert [Operation.objects.get(pk=pk).parent_id for pk in response.json()["retried"]] == [
        new_timeout.pk]


def test_api_bulk_retry_only_touches_the_callers_operations(api, other_user):
    theirs = OperationFactory(owner=other_user, failed=True)
    body = api.post(URL, {}, format="json").json()
    assert body["eligible"] == 0 and not Operation.objects.filter(parent=theirs).exists()


def test_api_bulk_retry_replays_with_the_same_idempotency_key(api, user):
    OperationFactory(owner=user, failed=True)
    first = api.post(URL, {}, format="json", HTTP_IDEMPOTENCY_KEY="bulk-1")
    again = api.post(URL, {}, format="json", HTTP_IDEMPOTENCY_KEY="bulk-1")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Operation.objects.filter(is_retry=True).count() == 1


def test_api_bulk_retry_refuses_a_reason_over_500_characters(api, user):
    OperationFactory(owner=user, failed=True)
    response = api.post(URL, {"reason": "x" * 501}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "reason_too_long"
    assert not Operation.objects.filter(is_retry=True).exists()


def test_api_bulk_retry_is_throttled_with_its_own_code(api, settings, user):
    settings.REBOUND = {**settings.REBOUND, "RETRY_THROTTLE": "2/min"}
    from django.core.cache import cache

    cache.clear()
    codes = [api.post(URL, {"dry_run": True}, format="json").status_code for _ in range(3)]
    third = api.post(URL, {"dry_run": True}, format="json")
    assert codes[:2] == [200, 200] and third.json()["code"] == "throttled"


# --- the admin ---------------------------------------------------------------------------------

@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


def post_action(client, operations, **extra):
    return client.post("/admin/operations/operation/", {
        "action": "retry_all_failed", "_selected_action": [str(o.pk) for o in operations],
        **extra}, follow=True)


def test_admin_retry_all_failed_shows_a_preview_first_and_changes_nothing(staff_client, mixed):
    before = Operation.objects.count()
    page = post_action(staff_client, mixed["all"]).content.decode()
    assert Operation.objects.count() == before
    assert "2 operations will be retried" in page
    assert "diagnostics.flaky" in page and "ai_timeout" in page
    for reason in ("retry limit reached", "already retried", "input missing", "not failed"):
        assert f"1 {reason}" in page
    assert 'name="confirm" value="yes"' in page


def test_admin_retry_all_failed_acts_on_confirmation_and_reports_skips(staff_client, mixed):
    response = post_action(staff_client, mixed["all"], confirm="yes", reason="after the outage")
    message = [str(m) for m in get_messages(response.wsgi_request)][0]
    assert message.startswith("Retried 2; skipped 4")
    children = Operation.objects.filter(parent__in=mixed["retryable"])
    assert children.count() == 2
    assert {(c.channel, c.retry_reason) for c in children} == {("admin", "after the outage")}


@pytest.mark.parametrize("field, limit", [("error_code", 64), ("kind", 64)])
def test_api_bulk_retry_refuses_a_filter_longer_than_the_schema_allows_even_after_whitespace(
        api, user, field, limit):
    # Found by the contract run: DRF trimmed U+0085 (Unicode whitespace) before checking the
    # length, so 65 characters sent passed a maxLength of 64.
    OperationFactory(owner=user, failed=True)
    response = api.post(URL, {field: "\x85" + "a" * limit}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert field in response.json()["errors"]
    assert not Operation.objects.filter(is_retry=True).exists()


def test_api_bulk_retry_takes_a_filter_at_its_limit_as_sent(api, user):
    response = api.post(URL, {"error_code": " " + "a" * 63, "dry_run": True}, format="json")
    assert response.status_code == 200


def test_a_second_bulk_retry_queues_behind_the_first_instead_of_starting_from_now(
        settings, user):
    settings.REBOUND = {**settings.REBOUND, "BULK_RETRY_RATE": 4.0}
    first = retry_failed([OperationFactory(owner=user, failed=True) for _ in range(3)],
                         by=user, channel=Channel.WEB)
    second = retry_failed([OperationFactory(owner=user, failed=True) for _ in range(3)],
                          by=user, channel=Channel.API)
    starts = [Operation.objects.get(pk=pk) for pk in first["retried"] + second["retried"]]
    due = [c.next_attempt_at or c.created_at for c in starts]
    gaps = [(b - a).total_seconds() for a, b in zip(due, due[1:])]
    assert all(gap >= 0.245 for gap in gaps)  # 4 per second in total, across both requests
    assert due[-1] - due[0] >= timedelta(seconds=1.2)


def test_slots_of_skipped_parents_are_given_back(settings, user, mixed):
    settings.REBOUND = {**settings.REBOUND, "BULK_RETRY_RATE": 4.0}
    retry_failed(mixed["all"], by=user, channel=Channel.WEB)  # 2 retried, 2 failed ones skipped
    after = retry_failed([OperationFactory(owner=user, failed=True)], by=user,
                         channel=Channel.WEB)
    last_of_first = Operation.objects.filter(parent__in=mixed["retryable"],
                                             next_attempt_at__isnull=False).get().next_attempt_at
    child = Operation.objects.get(pk=after["retried"][0])
    assert 0.245 <= (child.next_attempt_at - last_of_first).total_seconds() < 0.5


@pytest.mark.parametrize("when", ["2026-12-02 10:00:00Z", "2026-12-02T10:00:00", "2026-12-02",
                                  "yesterday"])
def test_api_bulk_retry_takes_failed_after_only_as_the_schema_says_rfc_3339(api, user, when):
    response = api.post(URL, {"failed_after": when, "dry_run": True}, format="json")
    assert response.status_code == 400 and "failed_after" in response.json()["errors"]


def test_api_bulk_retry_takes_an_rfc_3339_failed_after(api, user):
    response = api.post(URL, {"failed_after": "2026-12-02T10:00:00.5+01:00", "dry_run": True},
                        format="json")
    assert response.status_code == 200
