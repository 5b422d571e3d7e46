"""The webhook pages, as a signed-in user uses them (plain forms and htmx)."""
import pytest

from operations import runner
from operations.models import Operation, Status
from tests.webhooks_helpers import fail_one
from webhooks.models import Endpoint

pytestmark = pytest.mark.django_db


def add(web, url, types=("operation.failed", "job.finished")):
    return web.post("/webhooks/new", {"url": url, "description": "mine",
                                      "event_types": list(types)})


def test_the_secret_is_shown_once(web, receiver):
    answer = add(web, receiver.url)
    endpoint = Endpoint.objects.get()
    assert answer.status_code == 302 and answer["Location"] == endpoint.get_absolute_url()
    page = web.get(answer["Location"]).content.decode()
    assert endpoint.secret in page and "shown this once" in page
    assert endpoint.secret not in web.get(answer["Location"]).content.decode()
    assert endpoint.secret not in web.get("/webhooks/").content.decode()


def test_a_refused_url_says_why_and_keeps_the_form(web):
    answer = add(web, "http://127.0.0.2/hook")
    assert answer.status_code == 200
    page = answer.content.decode()
    assert "loopback" in page and 'value="http://127.0.0.2/hook"' in page
    assert not Endpoint.objects.exists()
    answer = add(web, "https://93.184.216.34/hook", types=[])
    assert "at least one event type" in answer.content.decode()


def test_resend_a_failed_delivery_with_and_without_javascript(web, user, receiver):
    add(web, receiver.url)
    endpoint = Endpoint.objects.get()
    receiver.mode("reject", secrets=[endpoint.secret], clear=True)
    for _ in range(2):
        fail_one(user)
    for delivery in Operation.objects.filter(kind="webhooks.deliver"):
        runner.run(delivery.pk)
    page = web.get(endpoint.get_absolute_url()).content.decode()
    assert page.count(">Resend<") == 2 and "2 deliveries failed" in page
    first, second = endpoint.deliveries.order_by("pk")
    url = f"/webhooks/{endpoint.pk}/deliveries/{first.pk}/resend"
    answer = web.post(url, HTTP_HX_REQUEST="true")
    assert answer.status_code == 200 and "toast" in answer["HX-Trigger"]
    assert 'id="deliveries"' in answer.content.decode()
    answer = web.post(f"/webhooks/{endpoint.pk}/deliveries/{second.pk}/resend")
    assert answer.status_code == 302
    assert Operation.objects.filter(kind="webhooks.deliver", is_retry=True).count() == 2
    answer = web.post(url, HTTP_HX_REQUEST="true")
    assert "this one is pending" in answer["HX-Trigger"]  # the resend, not run yet


def test_test_event_toggle_rotate_delete(web, receiver):
    add(web, receiver.url)
    endpoint = Endpoint.objects.get()
    assert web.post(f"/webhooks/{endpoint.pk}/test").status_code == 302
    assert endpoint.deliveries.get().event.type == "webhook.test"
    web.post(f"/webhooks/{endpoint.pk}/toggle")
    assert not Endpoint.objects.get().enabled
    web.post(f"/webhooks/{endpoint.pk}/toggle")
    assert Endpoint.objects.get().enabled
    old = endpoint.secret
    answer = web.post(f"/webhooks/{endpoint.pk}/rotate-secret")
    new = Endpoint.objects.get().secret
    assert new != old and new in web.get(answer["Location"]).content.decode()
    web.post(f"/webhooks/{endpoint.pk}/delete")
    assert not Endpoint.objects.exists()
    assert Operation.objects.get(kind="webhooks.deliver").status == Status.CANCELLED


def test_another_users_endpoint_is_not_found(web, other_user, receiver):
    theirs = Endpoint.objects.create(owner=other_user, url=receiver.url,
                                     event_types=["job.finished"], secret="whsec_x")
    for path in (f"/webhooks/{theirs.pk}/", f"/webhooks/{theirs.pk}/deliveries"):
        assert web.get(path).status_code == 404
    for action in ("test", "toggle", "rotate-secret", "delete", "resend-missed"):
        assert web.post(f"/webhooks/{theirs.pk}/{action}").status_code == 404
    assert Endpoint.objects.get(pk=theirs.pk).enabled
