"""The one place that calls an AI provider (OpenAI-compatible chat completions over requests).

Maps the outside world to the engine's errors: timeouts, connection failures and 408, 425, 429,
500, 502, 503, 504 are transient (Retry-After honoured, clamped); a redirect is never followed;
other 4xx are permanent; a 200 that is not the expected JSON is `ai_bad_response` (transient,
so the kind's attempt budget bounds it). One log line per call, never the key or the body.
"""
import json
import logging
import time
from dataclasses import dataclass

import requests
import urllib3
from django.conf import settings

from operations.dependencies import register_label
from operations.errors import PermanentError, TransientError, parse_retry_after

log = logging.getLogger("rebound.inference")

TRANSIENT_STATUSES = {408: "ai_timeout", 425: "ai_unavailable", 429: "ai_rate_limited",
                      500: "ai_unavailable", 502: "ai_unavailable", 503: "ai_unavailable",
                      504: "ai_timeout"}
# The answers that say the region is away (its gate counts them); 429 says "slow down" (its
# Retry-After holds the gate), the others are one call's trouble.
AWAY_STATUSES = {429, 502, 503, 504}
_session = requests.Session()


register_label("inference", lambda rest: f"the AI service in {rest.lstrip(':')}"
               if rest.strip(":") else "the AI service")


def dependency(region: str = "") -> str:
    """The name of the outside service a call in `region` needs (its gate's key)."""
    return f"inference:{region}" if region else "inference"


def dependency_of_input(input: dict) -> str:
    """For kinds whose input names the region."""
    return dependency(input.get("region", ""))


@dataclass(frozen=True)
class Reply:
    text: str
    model: str
    region: str
    elapsed: float


def chat(messages: list[dict], *, region: str = "", model: str = "",
         context: str = "") -> Reply:
    """Send one chat-completion request; return the answer or raise a classified error.
    `model` defaults to REBOUND_INFERENCE_MODEL."""
    conf = settings.INFERENCE
    model = model or conf["MODEL"]
    started = time.monotonic()
    outcome = "ok"
    try:
        response = _post(conf, model, messages, region)
        try:
            body = _read_within_deadline(response, conf, started)
        finally:
            response.close()
        _raise_for_status(response)
        reply = Reply(_answer_text(body), model, region, time.monotonic() - started)
        return reply
    except (TransientError, PermanentError) as error:
        outcome = error.code
        raise
    finally:
        log.info("inference %s region=%s outcome=%s ms=%.0f", context, region or "-", outcome,
                 (time.monotonic() - started) * 1000)


def _post(conf, model, messages, region):
    headers = {"Authorization": f"Bearer {conf['API_KEY']}", "Content-Type": "application/json"}
    if region:
        headers["X-Region"] = region
    try:
        return _session.post(f"{conf['BASE_URL'].rstrip('/')}/chat/completions",
                             json={"model": model, "messages": messages},
                             headers=headers, allow_redirects=False, stream=True,
                             timeout=(conf["CONNECT_TIMEOUT"], conf["READ_TIMEOUT"]))
    except requests.Timeout as exc:
        raise TransientError("ai_timeout", f"timeout: {type(exc).__name__}",
                             dependency_down=True) from None
    except requests.ConnectionError as exc:
        raise TransientError("ai_connection", f"connection: {type(exc).__name__}",
                             dependency_down=True) from None


def _read_within_deadline(response, conf, started) -> bytes:
    """Read the body, but not past the overall deadline nor past the size cap: a server that
    trickles bytes would otherwise reset the read timeout forever."""
    chunks, size = [], 0
    try:
        # read1 returns what one socket read brought, so the deadline is checked between
        # trickled bytes instead of waiting for a full buffer.
        while chunk := response.raw.read1(65536):
            size += len(chunk)
            if size > conf["MAX_RESPONSE_BYTES"]:
                raise TransientError("ai_bad_response",
                                     f"body over {conf['MAX_RESPONSE_BYTES']} bytes")
            if time.monotonic() - started > conf["DEADLINE"]:
                raise TransientError("ai_timeout", f"deadline {conf['DEADLINE']}s passed mid-body")
            chunks.append(chunk)
    except (requests.Timeout, urllib3.exceptions.ReadTimeoutError):
        raise TransientError("ai_timeout", "read timeout mid-body") from None
    except (requests.ConnectionError, urllib3.exceptions.ProtocolError, OSError) as exc:
        raise TransientError("ai_connection", f"body cut: {type(exc).__name__}") from None
    return b"".join(chunks)


def _raise_for_status(response) -> None:
    status = response.status_code
    if status in TRANSIENT_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"),
                                        cap=settings.REBOUND["RETRY_AFTER_CAP_SECONDS"])
        raise TransientError(TRANSIENT_STATUSES[status], f"HTTP {status}", retry_after=retry_after,
                             dependency_down=status in AWAY_STATUSES)
    if 300 <= status < 400:
        # Never followed: a redirect could carry the key to another host.
        raise PermanentError("ai_rejected", f"HTTP {status} redirect not followed")
    if status != 200:
        raise PermanentError("ai_rejected", f"HTTP {status}")


def _answer_text(body: bytes) -> str:
    try:
        data = json.loads(body)
        text = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise TransientError("ai_bad_response",
                             f"unreadable 200 body ({len(body)} bytes)") from None
    if not isinstance(text, str) or not text.strip():
        raise TransientError("ai_bad_response", "empty answer")
    return text.strip()
