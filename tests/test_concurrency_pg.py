"""Races decided by the database, with real threads on PostgreSQL."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from operations import runner
from operations.kinds import register
from operations.models import Attempt, Operation, Status
from tests.factories import OperationFactory
from tests.running import in_threads

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def no_throttle(settings):
    settings.REBOUND = {**settings.REBOUND, "RETRY_THROTTLE": "100000/min"}


def post_retries(user, operation, count):
    token = Token.objects.get_or_create(user=user)[0].key

    def post(_):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client.post(f"/api/v1/operations/{operation.pk}/retry", format="json").status_code

    return in_threads(count, post)


def test_100_concurrent_retry_posts_make_exactly_one_child(user):
    failed = OperationFactory(owner=user, failed=True)
    statuses = post_retries(user, failed, 100)
    assert statuses.count(202) == 1
    assert statuses.count(409) == 99
    assert Operation.objects.filter(parent=failed).count() == 1


def test_20_concurrent_posts_at_retry_number_2_end_at_3_never_4(user):
    second = OperationFactory(owner=user, failed=True, retry_number=2, is_retry=True)
    statuses = post_retries(user, second, 20)
    assert statuses.count(202) == 1
    assert Operation.objects.order_by("-retry_number").first().retry_number == 3
    child = Operation.objects.get(parent=second)
    Operation.objects.filter(pk=child.pk).update(status=Status.FAILED)
    assert post_retries(user, child, 20) == [429] * 20
    assert not Operation.objects.filter(retry_number__gt=3).exists()


def test_two_deliveries_at_once_make_one_attempt(user):
    operation = OperationFactory(owner=user, kind="diagnostics.sleep", input={"seconds": 0.5})
    outcomes = in_threads(2, lambda _: runner.run(operation.pk))
    assert sorted(outcomes) == ["completed", "skipped"]
    assert Attempt.objects.filter(operation=operation).count() == 1


def test_many_deliveries_of_many_operations_never_overlap(user):
    operations = [OperationFactory(owner=user, kind="diagnostics.noop") for _ in range(20)]
    in_threads(10, lambda i: [runner.run(op.pk) for op in operations])
    assert Operation.objects.filter(status=Status.COMPLETED).count() == 20
    assert Attempt.objects.count() == 20


def test_11_the_api_answers_503_while_the_database_is_away(api):
    from django.db import connection

    connection.close()
    saved = dict(connection.settings_dict)
    connection.settings_dict["PORT"] = "1"  # nothing listens there: as during a restart
    try:
        response = api.get("/api/v1/operations/")
    finally:
        connection.close()
        connection.settings_dict.update(saved)
    assert response.status_code == 503 and response["Retry-After"] == "5"
    body = response.json()
    assert body["code"] == "service_unavailable" and "127.0.0.1" not in str(body)
    assert api.get("/api/v1/operations/").status_code == 200  # and back once it returns


def test_several_dispatchers_at_once_release_each_due_retry_once(user, monkeypatch):
    from operations import delivery, dispatcher

    due = [OperationFactory(owner=user, scheduled=True) for _ in range(40)]
    enqueued = []
    monkeypatch.setattr(delivery, "enqueue_now", enqueued.append)
    in_threads(4, lambda _: dispatcher.release_due())
    assert sorted(enqueued) == sorted(op.pk for op in due)
    assert Operation.objects.filter(status=Status.PENDING).count() == 40


def test_23_page_admin_and_api_retrying_at_once_have_one_winner(user):
    from django.test import Client

    from tests.factories import UserFactory

    failed = OperationFactory(owner=user, failed=True)
    staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    token = Token.objects.get_or_create(user=user)[0].key

    def act(i):
        if i == 0:
            client = Client()
            client.force_login(user)
            return client.post(f"/operations/{failed.pk}/retry").status_code
        if i == 1:
            client = Client()
            client.force_login(staff)
            return client.post("/admin/operations/operation/", {
                "action": "retry_selected", "_selected_action": [str(failed.pk)]}).status_code
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client.post(f"/api/v1/operations/{failed.pk}/retry", format="json").status_code

    in_threads(3, act)
    children = Operation.objects.filter(parent=failed)
    assert children.count() == 1
    assert children.get().channel in ("web", "admin", "api")


@register("tests.connection_cut")
def connection_cut(context):
    """Has the database end this worker's connection just before the final write."""
    import psycopg
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    s = connection.settings_dict
    with psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432,
                         user=s["USER"] or "postgres", dbname=s["NAME"], autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    return {"ok": True}


def test_10_a_connection_killed_before_the_final_write_is_retried(user):
    operation = OperationFactory(owner=user, kind="tests.connection_cut")
    assert runner.run(operation.pk) == "completed"
    operation.refresh_from_db()
    assert operation.status == Status.COMPLETED and operation.attempts.get().outcome == "succeeded"
