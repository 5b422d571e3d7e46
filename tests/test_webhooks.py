"""Webhooks in the test process against a real receiver process on loopback: events become
signed deliveries, answers are judged, endpoints are turned off, secrets rotate, and no
delivery reaches an address it may not (connecting is only ever tried on loopback)."""
import ipaddress
import socket
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from operations import dispatcher, followups, runner
from operations.events import CATALOGUE
from operations.models import Notification, Operation, Status
from tests.running import make_due
from tests.webhooks_helpers import Names, deliver_all, fail_one, receiver_process
from webhooks import payloads, services, transport
from webhooks.models import Delivery, Endpoint, Event

ALL = list(CATALOGUE)


@pytest.fixture
def names(settings):
    return Names(settings)


@pytest.fixture
def public_allowed(settings, monkeypatch):
    """Public addresses count as reachable (as in production), and connecting anywhere is
    made impossible: these tests classify and register, they never send."""
    def no_connections(*args, **kwargs):
        raise AssertionError("a test that must not connect tried to")

    monkeypatch.setattr(socket, "create_connection", no_connections)
    monkeypatch.setattr(socket.socket, "connect", no_connections)
    settings.WEBHOOKS = {**settings.WEBHOOKS, "PUBLIC": True}


@pytest.fixture
def endpoint(user, receiver):
    point = services.create_endpoint(user, url=receiver.url, event_types=ALL)
    receiver.mode("ok", secrets=[point.secret], clear=True)
    return point


# --- where a delivery may go ------------------------------------------------------------------

@pytest.mark.parametrize("address, refused", [
    ("127.0.0.1", None),  # the allowed network
    ("127.0.0.2", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.2", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("fd00::1", "private"), ("100.64.0.1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "reserved"), ("240.0.0.1", "reserved"),
    ("93.184.216.34", None), ("2606:2800:220:1::1", None),
])
def test_addresses_are_classified_without_connecting(address, refused, public_allowed):
    reason = transport.refusal_of(address)
    if refused is None:
        assert reason is None
    else:
        assert refused in reason


def test_allowed_networks_let_only_themselves_through(settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": ["10.9.0.0/16"]}
    assert transport.refusal_of("10.9.1.1") is None
    assert "private" in transport.refusal_of("10.8.1.1")
    assert "loopback" in transport.refusal_of("127.0.0.1")
    assert ipaddress.ip_network("10.9.0.0/16") in transport.allowed_networks()


@pytest.mark.parametrize("url, says", [
    ("http://127.0.0.2:9/hook", "loopback"),
    ("https://[::1]/hook", "loopback"),
    ("https://rebind.test/hook", "loopback"),       # a name that resolves to 127.0.0.2
    ("https://metadata.test/latest", "link-local"),  # ...to 169.254.169.254
    ("https://10.0.0.5/hook", "private"),
    ("http://93.184.216.34/hook", "https://"),      # public, but plain http
    ("ftp://127.0.0.1/hook", "https://"),
    ("https://user:pw@93.184.216.34/hook", "passwords"),
    ("https://nowhere.test/hook", "does not resolve"),
])
def test_registration_refuses_what_a_delivery_may_not_reach(user, names, public_allowed, url,
                                                            says):
    names.answers.update({"rebind.test": "127.0.0.2", "metadata.test": "169.254.169.254"})
    with pytest.raises(services.RetryRefused) as refused:
        services.create_endpoint(user, url=url, event_types=["operation.failed"])
    assert refused.value.code == "url_refused"
    assert says in refused.value.message
    assert not Endpoint.objects.exists()


def test_registration_accepts_public_https_and_the_allowed_network(user, names,
                                                                   public_allowed):
    names.answers["hooks.example.test"] = "93.184.216.34"
    assert services.create_endpoint(user, url="https://hooks.example.test/in",
                                    event_types=["job.finished"]).secret.startswith("whsec_")
    services.create_endpoint(user, url="http://127.0.0.1:9/hook", event_types=ALL)


def test_a_server_on_a_closed_network_refuses_public_addresses(user):
    # The suite's own setting (no public address is ever reachable from a test).
    assert "public address" in transport.refusal_of("93.184.216.34")
    with pytest.raises(services.RetryRefused) as refused:
        services.create_endpoint(user, url="https://93.184.216.34/", event_types=["job.finished"])
    assert "only to its own networks" in refused.value.message


def test_a_name_rebound_to_loopback_after_registration_is_refused_at_connection(
        user, receiver, names):
    names.answers["hooks.test"] = "127.0.0.1"
    point = services.create_endpoint(user, url=f"http://hooks.test:{receiver.port}/hook",
                                     event_types=ALL)
    receiver.mode("ok", secrets=[point.secret], clear=True)
    names.answers["hooks.test"] = "127.0.0.2"  # the DNS answer changes (rebinding)
    fail_one(user)
    [delivery] = deliver_all()
    assert delivery.status == Status.FAILED
    assert delivery.error_code == "webhook_address_refused"
    assert receiver.deliveries() == []
    names.answers["hooks.test"] = "127.0.0.1"
    fail_one(user)
    deliver_all()
    assert len(receiver.deliveries()) == 1  # the same name, allowed again: it connects


def test_a_redirect_is_not_followed(user, receiver, endpoint):
    Endpoint.objects.filter(pk=endpoint.pk).update(url=receiver.url.replace("/hook",
                                                                            "/redirect"))
    fail_one(user)
    [delivery] = deliver_all()
    assert delivery.status == Status.FAILED and delivery.error_code == "webhook_redirected"
    assert Delivery.objects.get().response_status == 307
    assert receiver.deliveries() == []  # /hook, where it pointed, was never called


# --- deliveries -------------------------------------------------------------------------------

def test_an_event_is_delivered_once_signed_with_the_standard_headers(user, receiver, endpoint):
    failed = fail_one(user)
    [delivery] = deliver_all()
    assert delivery.status == Status.COMPLETED
    [seen] = receiver.deliveries()
    event = Event.objects.get()
    assert seen["verified"] and seen["id"] == event.webhook_id
    assert seen["type"] == "operation.failed"
    assert seen["data"]["operation"]["id"] == str(failed.pk)
    assert seen["data"]["operation"]["error"]["code"] == "invalid_input"
    row = Delivery.objects.get()
    assert row.response_status == 204 and row.delivered_at is not None
    payloads.OperationEventData(data=seen["data"]).is_valid(raise_exception=True)


def test_only_subscribed_types_of_the_owner_are_sent(user, other_user, receiver):
    mine = services.create_endpoint(user, url=receiver.url, event_types=["job.finished"])
    services.create_endpoint(other_user, url=receiver.url, event_types=["operation.failed"])
    receiver.mode("ok", secrets=[mine.secret], clear=True)
    fail_one(user)
    assert deliver_all() == []
    assert not Event.objects.exists()


def test_a_recovered_chain_is_an_event(user, receiver, endpoint):
    failed = fail_one(user)
    deliver_all()
    child = services.retry_operation(failed.pk, by=user, channel="api")
    runner.run(child.pk)
    deliver_all()
    types = [seen["type"] for seen in receiver.deliveries()]
    assert types == ["operation.failed", "operation.recovered"]


def test_follow_ups_run_twice_emit_once(user, receiver, endpoint):
    failed = fail_one(user)
    Operation.objects.filter(pk=failed.pk).update(followup_due=True)
    followups.run(failed.pk)  # a sweep that ran them again: the same key
    assert Event.objects.count() == 1 and Delivery.objects.count() == 1


def test_errors_are_judged(user, receiver, endpoint):
    fail_one(user)
    receiver.mode("fail")
    [delivery] = deliver_all()
    assert delivery.status == Status.RETRY_SCHEDULED and delivery.error_code == "webhook_failed"
    assert Endpoint.objects.get().failing_since is not None
    receiver.mode("reject")
    make_due(delivery)
    dispatcher.release_due()
    [delivery] = deliver_all()
    assert delivery.status == Status.FAILED and delivery.error_code == "webhook_rejected"
    ids = {seen["id"] for seen in receiver.deliveries()}
    assert len(ids) == 1  # every attempt carries the event's one webhook-id


def test_retry_after_is_honoured(user, receiver, endpoint):
    fail_one(user)
    receiver.mode("throttle")
    [delivery] = deliver_all()
    # 429 with Retry-After: 1 holds the endpoint's gate for a second: the delivery waits.
    assert delivery.status == Status.WAITING
    gate = delivery.dependency
    from operations.models import Gate
    assert Gate.objects.get(key=gate).state == "open"


def test_410_turns_the_endpoint_off_and_tells_the_owner(user, receiver, endpoint):
    fail_one(user)
    receiver.mode("gone")
    [delivery] = deliver_all()
    assert delivery.status == Status.FAILED and delivery.error_code == "webhook_gone"
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "410" in endpoint.disabled_reason
    note = Notification.objects.get(kind="webhooks.deliver")
    assert note.owner == user and "turned off" in note.message
    fail_one(user)
    assert Delivery.objects.count() == 1  # a turned-off endpoint gets nothing new


def test_failing_past_the_limit_turns_the_endpoint_off(user, receiver, endpoint):
    fail_one(user)
    receiver.mode("fail")
    Endpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timedelta(days=3, seconds=1))
    [delivery] = deliver_all()
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "3 days" in endpoint.disabled_reason
    # Re-enabling offers what it missed; resending it delivers with the same webhook-id.
    make_due(delivery)
    dispatcher.release_due()
    [delivery] = deliver_all()
    assert delivery.error_code == "webhook_endpoint_disabled"
    services.update_endpoint(endpoint, enabled=True)
    receiver.mode("ok")
    assert [op.pk for op in services.missed(endpoint)] == [delivery.pk]
    report = services.resend_missed(endpoint, by=user)
    assert len(report["retried"]) == 1
    Operation.objects.filter(pk=report["retried"][0]).update(next_attempt_at=timezone.now())
    dispatcher.release_due()
    deliver_all()
    seen = receiver.deliveries()
    assert seen[-1]["answered"] == 204 and len({s["id"] for s in seen}) == 1


def test_rotation_signs_with_both_secrets_for_a_day(user, receiver, endpoint):
    old = endpoint.secret
    services.rotate_secret(endpoint)
    new = Endpoint.objects.get().secret
    assert new != old
    for secrets in ([old], [new]):
        receiver.mode("ok", secrets=secrets, clear=True)
        fail_one(user)
        deliver_all()
        [seen] = receiver.deliveries()
        assert seen["verified"] and seen["signatures"] == 2
    Endpoint.objects.update(previous_secret_until=timezone.now() - timedelta(seconds=1))
    receiver.mode("ok", secrets=[old], clear=True)
    fail_one(user)
    deliver_all()
    [seen] = receiver.deliveries()
    assert not seen["verified"] and seen["signatures"] == 1


def test_send_test_event(user, receiver, endpoint):
    services.send_test(endpoint)
    deliver_all()
    [seen] = receiver.deliveries()
    assert seen["type"] == "webhook.test" and seen["verified"]


def test_resend_is_a_manual_retry_with_its_limits(user, receiver, endpoint, settings):
    settings.REBOUND = {**settings.REBOUND, "MAX_MANUAL_RETRIES": 1}
    fail_one(user)
    receiver.mode("reject")
    deliver_all()
    delivery = Delivery.objects.get()
    child = services.resend(delivery, by=user, reason="fixed it")
    assert child.is_retry and child.retry_reason == "fixed it" and child.channel == "web"
    runner.run(child.pk)
    with pytest.raises(services.RetryRefused) as refused:
        services.resend(delivery, by=user)
    assert refused.value.code == "retry_limit_reached"


def test_a_name_rebound_to_ipv6_loopback_is_refused_at_connection(user, receiver, names):
    names.answers["six.test"] = "127.0.0.1"
    point = services.create_endpoint(user, url=f"http://six.test:{receiver.port}/hook",
                                     event_types=ALL)
    receiver.mode("ok", secrets=[point.secret], clear=True)
    names.answers["six.test"] = "::1"
    fail_one(user)
    [delivery] = deliver_all()
    assert delivery.error_code == "webhook_address_refused" and receiver.deliveries() == []


def test_an_endpoint_that_does_not_answer_in_time_is_retried(user, receiver, endpoint,
                                                             settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "TIMEOUT": 0.5}
    receiver.mode("hang")
    fail_one(user)
    [delivery] = deliver_all()
    assert delivery.status == Status.RETRY_SCHEDULED
    assert delivery.error_code == "webhook_unreachable"
    assert Delivery.objects.get().response_status is None
    attempt = delivery.attempts.get()
    assert attempt.dependency_down  # counted by the endpoint's gate


def test_a_long_answer_is_read_up_to_a_cap_and_stored_cut(user, receiver, endpoint):
    receiver.mode("long")
    fail_one(user)
    deliver_all()
    row = Delivery.objects.get()
    assert row.response_status == 500 and row.response_body == "x" * 1000


def test_the_secret_is_never_logged_or_kept_in_an_error(user, receiver, endpoint, caplog):
    caplog.set_level("DEBUG")
    services.rotate_secret(endpoint)
    endpoint.refresh_from_db()
    for mode in ("fail", "reject", "gone"):
        receiver.mode(mode, secrets=[endpoint.secret])
        fail_one(user)
        deliver_all()
    secrets = (endpoint.secret, endpoint.previous_secret)
    stored = " ".join(f"{op.error_message} {op.error_detail}"
                      for op in Operation.objects.filter(kind="webhooks.deliver"))
    stored += " ".join(n.message for n in Notification.objects.all())
    for secret in secrets:
        assert secret not in caplog.text and secret not in stored
        assert secret.removeprefix("whsec_") not in caplog.text


def test_old_events_are_pruned_with_their_deliveries(user, receiver, endpoint):
    from operations import retention, rollups

    fail_one(user)
    deliver_all()
    rollups.fold()
    later = timezone.now() + timedelta(days=1)
    gone = retention.prune(before=later)
    assert gone["webhook_events"] == 1
    assert not Event.objects.exists() and not Delivery.objects.exists()
    assert not Operation.objects.filter(kind="webhooks.deliver").exists()
    assert Endpoint.objects.filter(pk=endpoint.pk).exists()


def test_a_sloppy_answer_does_not_spoil_the_next_delivery(user, receiver, endpoint):
    # A 204 that sends a body anyway would leave bytes on a kept-alive connection; each
    # delivery has its own connection, so the next one is read cleanly.
    receiver.mode("sloppy")
    for _ in range(3):
        fail_one(user)
    assert [op.status for op in deliver_all()] == [Status.COMPLETED] * 3
    assert sorted(receiver.seen()["counts"].values()) == [1, 1, 1]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for the name hooks.test (and 127.0.0.1, for the receiver's
    control calls)."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
                    "-subj", "/CN=hooks.test",
                    "-addext", "subjectAltName=DNS:hooks.test,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return folder / "cert.pem", folder / "key.pem"


def test_https_connects_to_the_checked_address_and_checks_the_certificate_for_the_name(
        user, names, certificate, monkeypatch):
    names.answers.update({"hooks.test": "127.0.0.1", "other.test": "127.0.0.1"})
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))  # trust this one
    with receiver_process(tls=certificate) as tls_receiver:
        right = services.create_endpoint(
            user, url=f"https://hooks.test:{tls_receiver.port}/hook", event_types=ALL)
        tls_receiver.mode("ok", secrets=[right.secret])
        fail_one(user)
        [delivery] = deliver_all()
        assert delivery.status == Status.COMPLETED  # pinned to 127.0.0.1, verified as hooks.test
        assert [s["verified"] for s in tls_receiver.deliveries()] == [True]
        services.update_endpoint(right, enabled=False)
        # The same address under a name the certificate does not carry: refused by TLS.
        services.create_endpoint(user, url=f"https://other.test:{tls_receiver.port}/hook",
                                 event_types=ALL)
        fail_one(user)
        [delivery] = deliver_all()
        assert delivery.error_code == "webhook_unreachable"
        assert "SSLError" in delivery.error_detail
        assert len(tls_receiver.deliveries()) == 1


def test_deliveries_wait_for_their_endpoint_longer_than_other_work(user, endpoint, settings):
    from operations import gates

    settings.REBOUND = {**settings.REBOUND, "WAIT_LIMIT_SECONDS": 86400.0}
    two_days_ago = timezone.now() - timedelta(days=2)
    other = Operation.objects.create(kind="diagnostics.noop", owner=user, triggered_by=user,
                                     dependency="inference:eu-west", status=Status.WAITING,
                                     waiting_since=two_days_ago)
    services.send_test(endpoint)
    delivery = Operation.objects.get(kind="webhooks.deliver")
    Operation.objects.filter(pk=delivery.pk).update(status=Status.WAITING,
                                                    waiting_since=two_days_ago)
    assert gates._give_up_waiting() == 1  # the other work, past REBOUND_WAIT_LIMIT (1 day)
    other.refresh_from_db()
    delivery.refresh_from_db()
    assert other.status == Status.FAILED and delivery.status == Status.WAITING
    Operation.objects.filter(pk=delivery.pk).update(
        waiting_since=timezone.now() - timedelta(days=3, seconds=1))
    assert gates._give_up_waiting() == 1  # the delivery, past its own 3 days
    delivery.refresh_from_db()
    assert delivery.status == Status.FAILED and delivery.error_code == "dependency_down"
