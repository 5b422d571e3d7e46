"""The inference client against the real local service on loopback (no mocked requests)."""
import socket
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from inference import client as inference
from operations.errors import PermanentError, TransientError

MESSAGES = [{"role": "system", "content": "Ask one interview question."},
            {"role": "user", "content": "databases"}]


def call(region=""):
    return inference.chat(MESSAGES, region=region)


def raised(region=""):
    with pytest.raises((TransientError, PermanentError)) as info:
        call(region)
    return info.value


def test_a_healthy_service_answers_with_a_question(ai):
    reply = call()
    assert "databases" in reply.text and reply.text.endswith("?")


@pytest.mark.parametrize("status,code", [(500, "ai_unavailable"), (502, "ai_unavailable"),
                                         (503, "ai_unavailable"), (504, "ai_timeout"),
                                         (408, "ai_timeout"), (425, "ai_unavailable"),
                                         (429, "ai_rate_limited")])
def test_retryable_statuses_are_transient(ai, status, code):
    ai.faults(sequence=[status])
    error = raised()
    assert error.transient and error.code == code


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_other_client_errors_are_permanent(ai, status):
    ai.faults(sequence=[status])
    error = raised()
    assert not error.transient and error.code == "ai_rejected"


def test_a_wrong_key_is_401_and_permanent(ai, settings):
    settings.INFERENCE = {**settings.INFERENCE, "API_KEY": "wrong"}
    error = raised()
    assert not error.transient and error.detail == "HTTP 401"


def test_retry_after_in_seconds_is_read(ai):
    ai.faults(sequence=[429], retry_after="7")
    assert raised().retry_after == 7.0


def test_retry_after_as_an_http_date_is_read(ai):
    when = datetime.now(timezone.utc) + timedelta(seconds=20)
    ai.faults(sequence=[503], retry_after=format_datetime(when, usegmt=True))
    assert 15 <= raised().retry_after <= 20


def test_an_absurd_retry_after_is_clamped(ai, settings):
    ai.faults(sequence=[503], retry_after="86400000")
    assert raised().retry_after == settings.REBOUND["RETRY_AFTER_CAP_SECONDS"]


def test_a_read_timeout_is_transient(ai):
    ai.faults(timeout=True, timeout_seconds=4)
    error = raised()
    assert error.transient and error.code == "ai_timeout"


def test_a_trickling_body_hits_the_overall_deadline(ai, settings):
    settings.INFERENCE = {**settings.INFERENCE, "DEADLINE": 0.5}
    ai.faults(trickle=True, trickle_interval=0.05)
    error = raised()
    assert error.transient and error.code == "ai_timeout"


def test_a_reset_connection_is_transient(ai):
    ai.faults(reset=True)
    error = raised()
    assert error.transient and error.code == "ai_connection"


def test_a_refused_connection_is_transient(ai, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.INFERENCE = {**settings.INFERENCE, "BASE_URL": f"http://127.0.0.1:{port}/v1"}
    error = raised()
    assert error.transient and error.code == "ai_connection"


@pytest.mark.parametrize("spec", [{"invalid_json": True}, {"html": True}])
def test_an_unreadable_200_is_a_typed_error_without_the_body(ai, spec):
    ai.faults(**spec)
    error = raised()
    assert error.code == "ai_bad_response"
    assert "<html>" not in error.message and "choices" not in error.message


def test_a_redirect_is_not_followed(ai):
    with socket.socket() as elsewhere:
        elsewhere.bind(("127.0.0.1", 0))
        elsewhere.listen()
        elsewhere.setblocking(False)
        ai.faults(redirect=f"http://127.0.0.1:{elsewhere.getsockname()[1]}/steal")
        error = raised()
        with pytest.raises(BlockingIOError):
            elsewhere.accept()  # nobody came
    assert not error.transient and error.code == "ai_rejected"


def test_faults_apply_per_region(ai):
    ai.faults(region="eu-west", sequence=[503])
    assert call(region="us-east").text
    assert raised(region="eu-west").code == "ai_unavailable"


def test_the_log_line_names_the_outcome_but_not_the_key(ai, caplog, settings):
    settings.INFERENCE = {**settings.INFERENCE, "API_KEY": "test-key"}
    ai.faults(sequence=[503])
    with caplog.at_level("INFO", logger="rebound.inference"):
        raised()
    line = caplog.records[-1].getMessage()
    assert "outcome=ai_unavailable" in line and "test-key" not in line


def test_faults_apply_per_route(ai):
    ai.faults(route="embeddings", sequence=[503])
    assert call().text  # another route's fault does not touch chat completions
    ai.faults(route="chat.completions", sequence=[503])
    assert raised().code == "ai_unavailable"
