"""POST /api/v1/operations/{id}/retry and the one retry service behind it."""
import re

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from operations.models import Channel, Operation, Status
from tests.factories import OperationFactory

pytestmark = pytest.mark.django_db


def retry_url(operation_or_id):
    return f"/api/v1/operations/{getattr(operation_or_id, 'pk', operation_or_id)}/retry"


@pytest.fixture
def failed(user):
    return OperationFactory(owner=user, failed=True,
                            input={"storage_key": "uploads/abc", "sha256": "00"},
                            checkpoint={"index": 17})


def test_retry_returns_202_with_a_new_linked_operation(api, user, failed):
    response = api.post(retry_url(failed), {"reason": "provider is back"}, format="json")
    assert response.status_code == 202
    body = response.json()
    child = Operation.objects.get(pk=body["id"])
    assert body["parent_operation_id"] == str(failed.pk) and body["retry_count"] == 1
    assert child.status == Status.PENDING and child.parent == failed and child.root == failed
    assert child.input == failed.input and child.checkpoint == {"index": 17}
    assert (child.triggered_by, child.channel, child.retry_reason, child.is_retry) == (
        user, Channel.API, "provider is back", True)


def test_the_failed_parent_is_left_as_it_was(api, failed):
    api.post(retry_url(failed), format="json")
    parent = Operation.objects.get(pk=failed.pk)
    assert parent.status == Status.FAILED and parent.error_code == "ai_unavailable"
    assert parent.attempts.count() == 1


def test_retry_is_delivered_after_commit(api, failed, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        api.post(retry_url(failed), format="json")
    assert len(callbacks) == 1


def test_second_click_on_retry_gets_409_with_the_existing_child(api, failed):
    first = api.post(retry_url(failed), format="json").json()
    second = api.post(retry_url(failed), format="json")
    assert second.status_code == 409
    assert second.json()["code"] == "already_retried"
    assert second.json()["retry_operation_id"] == first["id"]
    assert Operation.objects.filter(parent=failed).count() == 1


def test_retry_of_an_operation_that_is_not_failed_is_409_and_changes_nothing(api, user):
    operation = OperationFactory(owner=user, completed=True)
    response = api.post(retry_url(operation), format="json")
    assert response.status_code == 409 and response.json()["code"] == "not_failed"
    assert Operation.objects.count() == 1


def test_fourth_manual_retry_is_429_retry_limit_reached(api, user):
    third = OperationFactory(owner=user, failed=True, retry_number=3, is_retry=True)
    response = api.post(retry_url(third), format="json")
    assert response.status_code == 429
    assert response.json()["code"] == "retry_limit_reached"
    assert Operation.objects.count() == 1


def test_retry_chain_counts_up_to_three(api, user, failed):
    current = failed
    for expected in (1, 2, 3):
        body = api.post(retry_url(current), format="json").json()
        assert body["retry_count"] == expected
        current = Operation.objects.get(pk=body["id"])
        Operation.objects.filter(pk=current.pk).update(status=Status.FAILED)
    assert api.post(retry_url(current), format="json").status_code == 429


def test_someone_elses_operation_is_404_byte_identical_to_an_unknown_id(api, other_user):
    theirs = OperationFactory(owner=other_user, failed=True)
    not_yours = api.post(retry_url(theirs), format="json")
    unknown = api.post(retry_url("6f1c2a51-8a55-4a38-9a39-6a2f0f3b1a00"), format="json")
    assert not_yours.status_code == unknown.status_code == 404
    assert not_yours.content == unknown.content
    assert Operation.objects.filter(parent=theirs).count() == 0


def test_a_malformed_id_is_404_too(api):
    assert api.post(retry_url("not-a-uuid"), format="json").status_code == 404


def test_reason_of_500_characters_is_accepted(api, failed):
    response = api.post(retry_url(failed), {"reason": "x" * 500}, format="json")
    assert response.status_code == 202


def test_reason_of_501_characters_is_400_with_a_field_error_and_nothing_written(api, failed):
    response = api.post(retry_url(failed), {"reason": "x" * 501}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "reason_too_long"
    assert "reason" in response.json()["errors"]
    assert Operation.objects.count() == 1


def test_reason_with_markup_and_newlines_is_stored_as_given_and_logged_on_one_line(
        api, failed, caplog):
    reason = "line one\n<script>alert(1)</script>"
    with caplog.at_level("INFO", logger="rebound.retry"):
        body = api.post(retry_url(failed), {"reason": reason}, format="json").json()
    assert Operation.objects.get(pk=body["id"]).retry_reason == reason
    line = caplog.records[-1].getMessage()
    assert "\n" not in line and "line one\\n<script>" in line


def test_input_gone_is_409_input_missing(api, user):
    operation = OperationFactory(owner=user, failed=True, kind="tests.needs_input",
                                 input={"present": False})
    response = api.post(retry_url(operation), format="json")
    assert response.status_code == 409 and response.json()["code"] == "input_missing"


def test_same_idempotency_key_and_body_replays_the_first_answer(api, failed):
    first = api.post(retry_url(failed), {"reason": "r"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = api.post(retry_url(failed), {"reason": "r"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Operation.objects.filter(parent=failed).count() == 1


def test_same_idempotency_key_with_another_body_is_422(api, failed):
    api.post(retry_url(failed), {"reason": "r"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    other = api.post(retry_url(failed), {"reason": "s"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


def test_retry_without_a_token_is_401(failed):
    response = APIClient().post(retry_url(failed), format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert "Token" in response["WWW-Authenticate"]


def test_retry_with_a_bad_token_is_401(failed):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.post(retry_url(failed), format="json").status_code == 401


def test_session_post_without_csrf_is_403(user, failed):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(retry_url(failed), format="json")
    assert response.status_code == 403
    assert Operation.objects.filter(parent=failed).count() == 0


@override_settings(REBOUND={**__import__("django.conf").conf.settings.REBOUND,
                            "RETRY_THROTTLE": "2/min"})
def test_a_burst_of_retries_is_throttled_with_its_own_code(api, user):
    from django.core.cache import cache

    cache.clear()
    codes = [api.post(retry_url(OperationFactory(owner=user, completed=True)),
                      format="json").json()["code"] for _ in range(3)]
    assert codes[:2] == ["not_failed", "not_failed"]
    assert codes[2] == "throttled"


def test_cancel_a_scheduled_operation(api, user):
    operation = OperationFactory(owner=user, scheduled=True)
    response = api.post(f"/api/v1/operations/{operation.pk}/cancel", format="json")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_cancel_a_completed_operation_is_409(api, user):
    operation = OperationFactory(owner=user, completed=True)
    response = api.post(f"/api/v1/operations/{operation.pk}/cancel", format="json")
    assert response.status_code == 409 and response.json()["code"] == "not_cancellable"


def test_list_shows_only_my_operations_and_filters_by_status(api, user, other_user):
    mine = OperationFactory(owner=user, failed=True)
    OperationFactory(owner=user, completed=True)
    OperationFactory(owner=other_user, failed=True)
    body = api.get("/api/v1/operations/?status=failed").json()
    assert [item["id"] for item in body["results"]] == [str(mine.pk)]


def test_detail_shows_attempts_lineage_and_no_server_side_detail(api, failed):
    child_id = api.post(retry_url(failed), format="json").json()["id"]
    body = api.get(f"/api/v1/operations/{child_id}/").json()
    assert [entry["id"] for entry in body["lineage"]] == [str(failed.pk), child_id]
    parent = api.get(f"/api/v1/operations/{failed.pk}/").json()
    assert parent["attempts"][0]["error_code"] == "ai_unavailable"
    assert parent["error"]["what_to_do"]
    assert "10.0.0.7" not in str(parent)  # error_detail names a host: never shown


def test_openapi_schema_and_docs_are_served_locally(api):
    schema = api.get("/api/v1/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/operations/{id}/retry" in schema.content
    docs = api.get("/api/v1/docs/")
    assert docs.status_code == 200
    assert not re.search(rb"""(src|href)=["']?(https?:)?//""", docs.content)  # nothing remote
    assert b"/static/drf_spectacular_sidecar/" in docs.content


def test_the_openapi_schema_validates_without_warnings(tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))
    assert "/api/v1/imports/full-pass/retry" in (tmp_path / "s.yml").read_text()
