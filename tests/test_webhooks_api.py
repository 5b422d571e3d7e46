"""The webhooks API: endpoints are the caller's own, the secret is shown once (and at each
rotation), deliveries can be listed and resent, and every refusal has its code."""
import pytest

from operations import runner
from operations.models import Operation, Status
from tests.webhooks_helpers import fail_one
from webhooks.models import Endpoint

pytestmark = pytest.mark.django_db
BASE = "/api/v1/webhooks/"


def create(api, url, types=("operation.failed",)):
    return api.post(BASE, {"url": url, "event_types": list(types)}, format="json")


def test_create_shows_the_secret_once(api, receiver):
    answer = create(api, receiver.url)
    assert answer.status_code == 201
    secret = answer.json()["secret"]
    assert secret.startswith("whsec_")
    endpoint_id = answer.json()["id"]
    for body in (api.get(f"{BASE}{endpoint_id}/").content, api.get(BASE).content):
        assert secret.encode() not in body and b"secret\"" not in body


def test_refusals(api, other_user, receiver):
    assert create(api, "http://127.0.0.2/hook").json()["code"] == "url_refused"
    assert create(api, "https://[::1]/hook").json()["code"] == "url_refused"
    assert create(api, "https://no-such-name.test/").json()["code"] == "url_refused"
    answer = create(api, receiver.url, types=["job.done"])
    assert answer.status_code == 400 and answer.json()["code"] == "invalid"
    assert "event_types" in answer.json()["errors"]
    theirs = Endpoint.objects.create(owner=other_user, url=receiver.url,
                                     event_types=["job.finished"], secret="whsec_x")
    for path in (f"{BASE}{theirs.pk}/", f"{BASE}not-a-uuid/"):
        assert api.get(path).json()["code"] == "not_found"
    assert api.patch(f"{BASE}{theirs.pk}/", {"enabled": False},
                     format="json").status_code == 404
    assert api.delete(f"{BASE}{theirs.pk}/").status_code == 404
    assert Endpoint.objects.get(pk=theirs.pk).enabled


def test_update_rotate_and_delete(api, receiver):
    endpoint_id = create(api, receiver.url).json()["id"]
    changed = api.patch(f"{BASE}{endpoint_id}/", {"event_types": ["job.finished"],
                                                   "enabled": False}, format="json")
    assert changed.status_code == 200
    assert changed.json()["event_types"] == ["job.finished"] and not changed.json()["enabled"]
    assert api.patch(f"{BASE}{endpoint_id}/", {"url": "http://10.0.0.1/"},
                     format="json").json()["code"] == "url_refused"
    before = Endpoint.objects.get().secret
    rotated = api.post(f"{BASE}{endpoint_id}/rotate-secret/")
    assert rotated.status_code == 200 and rotated.json()["secret"] != before
    assert rotated.json()["signing_secret_rotating_until"] is not None
    assert api.delete(f"{BASE}{endpoint_id}/").status_code == 204
    assert not Endpoint.objects.exists()


def test_deliveries_test_event_and_resend(api, user, receiver):
    answer = create(api, receiver.url)
    endpoint_id, secret = answer.json()["id"], answer.json()["secret"]
    receiver.mode("reject", secrets=[secret], clear=True)
    operation = fail_one(user)
    tested = api.post(f"{BASE}{endpoint_id}/test/")
    assert tested.status_code == 202 and tested.json()["event_type"] == "webhook.test"
    for delivery in Operation.objects.filter(kind="webhooks.deliver"):
        runner.run(delivery.pk)
    listed = api.get(f"{BASE}{endpoint_id}/deliveries/").json()["results"]
    assert [d["event_type"] for d in listed] == ["webhook.test", "operation.failed"]
    failed = listed[1]
    assert failed["status"] == "failed" and failed["response_status"] == 400
    assert failed["payload"]["data"]["operation"]["id"] == str(operation.pk)
    assert failed["webhook_id"].startswith("evt_")
    receiver.mode("ok")
    resent = api.post(f"{BASE}{endpoint_id}/deliveries/{failed['id']}/resend/",
                      {"reason": "receiver fixed"}, format="json")
    assert resent.status_code == 202 and resent.json()["retry_count"] == 1
    runner.run(resent.json()["id"])
    again = api.get(f"{BASE}{endpoint_id}/deliveries/").json()["results"][1]
    assert again["status"] == "delivered" and again["resends"] == 1
    assert api.post(f"{BASE}{endpoint_id}/deliveries/{failed['id']}/resend/",
                    format="json").json()["code"] == "not_failed"
    assert api.post(f"{BASE}{endpoint_id}/deliveries/999999/resend/",
                    format="json").json()["code"] == "not_found"
    # Accepted once (the resend); the test event was refused (400) and not resent.
    assert receiver.seen()["counts"] == {failed["webhook_id"]: 1}


def test_a_turned_off_endpoint_refuses_tests_and_resends(api, receiver):
    endpoint_id = create(api, receiver.url).json()["id"]
    api.patch(f"{BASE}{endpoint_id}/", {"enabled": False}, format="json")
    assert api.post(f"{BASE}{endpoint_id}/test/").json()["code"] == "endpoint_disabled"
    assert api.post(f"{BASE}{endpoint_id}/resend-missed/").json()["code"] == "endpoint_disabled"
    api.patch(f"{BASE}{endpoint_id}/", {"enabled": True}, format="json")
    report = api.post(f"{BASE}{endpoint_id}/resend-missed/")
    assert report.status_code == 202 and report.json()["eligible"] == 0


def test_event_catalogue(api):
    types = [row["type"] for row in api.get(f"{BASE}event-types/").json()]
    assert "operation.failed" in types and "import.full_pass.completed" in types
    assert not Operation.objects.filter(status=Status.PENDING).exists()
