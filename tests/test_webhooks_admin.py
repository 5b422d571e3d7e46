"""Staff and webhooks: the admin lists endpoints and deliveries (never a secret) and its
actions say what they did and what they skipped; /metrics counts endpoints by state."""
import pytest

from operations import rollups, runner
from operations.models import Operation
from tests.factories import UserFactory
from tests.webhooks_helpers import fail_one
from webhooks import services
from webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def failed_delivery(user, receiver):
    endpoint = services.create_endpoint(user, url=receiver.url, event_types=["operation.failed"])
    receiver.mode("reject", secrets=[endpoint.secret], clear=True)
    fail_one(user)
    runner.run(Operation.objects.get(kind="webhooks.deliver").pk)
    return Delivery.objects.get()


def act(client, model, action, pks):
    return client.post(f"/admin/webhooks/{model}/", {"action": action,
                                                     "_selected_action": [str(p) for p in pks]},
                       follow=True)


def test_the_admin_lists_without_secrets(staff_client, failed_delivery):
    endpoint = failed_delivery.endpoint
    for path in ("/admin/webhooks/endpoint/", f"/admin/webhooks/endpoint/{endpoint.pk}/change/",
                 "/admin/webhooks/delivery/",
                 f"/admin/webhooks/delivery/{failed_delivery.pk}/change/"):
        page = staff_client.get(path)
        assert page.status_code == 200
        assert endpoint.secret not in page.content.decode()
    assert "failed" in staff_client.get("/admin/webhooks/delivery/").content.decode()


def test_resend_reports_what_it_skipped(staff_client, failed_delivery, receiver):
    receiver.mode("ok")
    answer = act(staff_client, "delivery", "resend", [failed_delivery.pk])
    assert "Resent 1; skipped 0." in answer.content.decode()
    answer = act(staff_client, "delivery", "resend", [failed_delivery.pk])
    assert "Resent 0; skipped 1 (1 not failed)." in answer.content.decode()
    child = Operation.objects.get(kind="webhooks.deliver", is_retry=True)
    assert child.channel == "admin" and child.triggered_by.username == "staff"


def test_endpoint_actions(staff_client, failed_delivery):
    endpoint = failed_delivery.endpoint
    answer = act(staff_client, "endpoint", "turn_off", [endpoint.pk])
    assert "Turned off 1; skipped 0." in answer.content.decode()
    answer = act(staff_client, "endpoint", "send_test_event", [endpoint.pk])
    assert "Sent 0 test events; skipped 1 (1 endpoint disabled)." in answer.content.decode()
    answer = act(staff_client, "endpoint", "turn_on", [endpoint.pk])
    assert "Turned on 1" in answer.content.decode()
    answer = act(staff_client, "endpoint", "resend_missed", [endpoint.pk])
    assert "Resent 1; skipped 0." in answer.content.decode()


def test_metrics_count_endpoints_and_deliveries(staff_client, failed_delivery, user):
    services.create_endpoint(user, url="http://127.0.0.1:9/off", event_types=["job.finished"])
    Endpoint.objects.filter(url__endswith="/off").update(enabled=False)
    rollups.fold()
    text = staff_client.get("/metrics").content.decode()
    assert 'rebound_webhook_endpoints{state="off"} 1.0' in text
    assert 'rebound_webhook_endpoints{state="on"} 1.0' in text
    assert 'rebound_operations_total{kind="webhooks.deliver",status="failed"} 1.0' in text
