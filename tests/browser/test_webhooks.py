"""The webhook pages in a real browser, against a real receiver process: add an endpoint
(its secret shown once), send a test event, watch a failed delivery and Resend it; with
JavaScript and without, at desktop and phone width."""
import pytest
from playwright.sync_api import expect

from tests.browser.helpers import assert_accessible, assert_fits_a_phone
from tests.processes import wait_for
from tests.webhooks_helpers import receiver_process
from webhooks.models import Delivery, Endpoint

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver():
    with receiver_process() as running:
        yield running


def add_endpoint(page, url) -> Endpoint:
    page.goto("/webhooks/")
    page.get_by_role("link", name="Add endpoint").click()
    page.get_by_label("URL").fill(url)
    page.get_by_label("Description (optional)").fill("Where my events go")
    page.get_by_role("button", name="Add endpoint").click()
    return Endpoint.objects.get()


def test_add_an_endpoint_test_it_and_resend_a_failed_delivery(page, receiver):
    page.goto("/webhooks/new")
    page.get_by_label("URL").fill("http://127.0.0.2/hook")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_role("alert")).to_contain_text("loopback")
    endpoint = add_endpoint(page, receiver.url)
    secret = page.get_by_test_id("secret")
    expect(secret).to_have_text(endpoint.secret)
    assert_accessible(page)
    assert_fits_a_phone(page)
    page.set_viewport_size({"width": 1280, "height": 900})
    receiver.mode("reject", secrets=[endpoint.secret])
    page.reload()
    expect(page.get_by_test_id("secret")).to_have_count(0)  # shown once
    page.get_by_role("button", name="Send test event").click()
    expect(page.locator("#toasts")).to_contain_text("Test event on its way.")
    deliveries = page.get_by_role("region", name="Recent deliveries")
    expect(deliveries).to_contain_text("Failed", timeout=15_000)  # the table polls itself
    expect(deliveries).to_contain_text("400")
    receiver.mode("ok")
    resend = deliveries.get_by_role("button", name="Resend webhook.test")
    resend.click()
    expect(page.locator("#toasts")).to_contain_text("Resending webhook.test.")
    expect(deliveries).to_contain_text("Delivered", timeout=15_000)
    expect(deliveries).to_contain_text("resent 1×")
    assert receiver.seen()["counts"] == {Delivery.objects.get().event.webhook_id: 1}
    assert [s["verified"] for s in receiver.deliveries()] == [True, True]
    assert_accessible(page)
    assert_fits_a_phone(page)


def test_the_webhook_pages_work_without_javascript(no_js_page, receiver):
    page = no_js_page
    endpoint = add_endpoint(page, receiver.url)
    expect(page.get_by_test_id("secret")).to_have_text(endpoint.secret)
    receiver.mode("gone", secrets=[endpoint.secret])
    page.get_by_role("button", name="Send test event").click()
    expect(page.locator("#toasts")).to_contain_text("Test event on its way.")
    wait_for(lambda: not Endpoint.objects.get().enabled, 20, what="the 410 to turn it off")
    page.reload()
    expect(page.get_by_role("region", name="Recent deliveries")).to_contain_text("Failed")
    expect(page.locator("body")).to_contain_text("answered 410 Gone")
    receiver.mode("ok")
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator("#toasts")).to_contain_text("It missed 1 delivery")
    page.get_by_role("button", name="Resend 1 missed").click()
    expect(page.locator("#toasts")).to_contain_text("Resending 1 missed delivery.")
    wait_for(lambda: Delivery.objects.get().delivered_at is not None, 20,
             what="the resent delivery")
    page.reload()
    expect(page.get_by_role("region", name="Recent deliveries")).to_contain_text("Delivered")
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("#toasts")).to_contain_text("deleted")
    assert not Endpoint.objects.exists()
