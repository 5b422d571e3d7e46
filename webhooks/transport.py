"""Sending one webhook: where it may go, how it is signed, what came back.

Webhook URLs are chosen by users, so every connection is checked against the address it really
goes to: the host is resolved once per connection, every address it resolves to is classified,
and the connection is made to the checked address (the name stays in the Host header and, for
https, in SNI and the certificate check), so a DNS answer that changes between the check and
the connection (rebinding) cannot slip through. Redirects are never followed. Loopback,
private, link-local (cloud metadata), multicast, reserved and other non-public addresses are
refused, except the networks named in REBOUND_WEBHOOK_ALLOWED_NETWORKS. The session is
requests-hardened's (no redirects, a default timeout); its address ranges are reused here.
"""
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests_hardened import Config, HTTPSession
from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES
from standardwebhooks import Webhook

USER_AGENT = "Rebound-Webhooks/1"


class Refused(Exception):
    """The URL may not be called: says why, in words a person can act on (no secret in it)."""


@lru_cache(maxsize=8)
def _networks(names: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(name, strict=False) for name in names)


def allowed_networks() -> tuple:
    return _networks(tuple(settings.WEBHOOKS["ALLOWED_NETWORKS"]))


def refusal_of(address: str) -> str | None:
    """Why a connection to `address` is refused, or None when it may be made."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if any(ip in network for network in allowed_networks() if network.version == ip.version):
        return None
    if ip.is_loopback:
        return "a loopback address (this machine)"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata lives)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified or ip.is_reserved:
        return "a reserved address"
    if ip.is_private or not ip.is_global or any(ip in net for net in EXTRA_BLOCKED_NET_RANGES):
        return "a private address"
    if not settings.WEBHOOKS["PUBLIC"]:
        return "a public address, and this server sends webhooks only to its own networks"
    return None


def resolve(host: str, port: int) -> str:
    """The address to connect to for `host`: every address it resolves to must be allowed."""
    hosts, flags = settings.WEBHOOKS["HOSTS"], 0
    if hosts is not None:  # a fixed list instead of DNS: address literals and those names
        host, flags = hosts.get(host, host), socket.AI_NUMERICHOST
    try:
        answers = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                     flags=flags)
    except (socket.gaierror, UnicodeError):
        raise requests.ConnectionError(f"the name {host} does not resolve") from None
    addresses = [answer[4][0] for answer in answers
                 if answer[0] in (socket.AF_INET, socket.AF_INET6)]
    if not addresses:
        raise requests.ConnectionError(f"the name {host} has no address")
    for address in addresses:
        reason = refusal_of(address)
        if reason:
            raise Refused(f"{host} resolves to {reason}; webhooks are only sent to public "
                          "addresses." if settings.WEBHOOKS["PUBLIC"] else
                          f"{host} resolves to {reason}.")
    return addresses[0]


def check_url(url: str) -> None:
    """At registration: https (or http to an allowed network), and a host that resolves to
    addresses a delivery may reach. Raises Refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("Use an https:// URL with a host name.")
    if parts.username or parts.password:
        raise Refused("Leave user names and passwords out of the URL; every delivery is "
                      "signed instead.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("The URL's port is not a number from 1 to 65535.") from None
    try:
        address = resolve(parts.hostname, port)
    except requests.ConnectionError:
        raise Refused(f"The host {parts.hostname} does not resolve; check the URL.") from None
    if parts.scheme == "http" and not any(
            ipaddress.ip_address(address) in network for network in allowed_networks()
            if network.version == ipaddress.ip_address(address).version):
        raise Refused("Use https://; plain http:// is accepted only to the networks this "
                      "server allows.")


class PinnedAdapter(HTTPAdapter):
    """Connects to the address `resolve` checked, whatever the name resolves to later."""

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert)
        hostname, port = host_params["host"], host_params["port"]
        request.headers = CaseInsensitiveDict(request.headers or {})
        host_header = f"[{hostname}]" if ":" in hostname else hostname
        if port is not None:
            host_header += f":{port}"
        request.headers["Host"] = host_header
        if host_params["scheme"] == "https":
            pool_kwargs["assert_hostname"] = hostname
            pool_kwargs["server_hostname"] = hostname
        default = 443 if host_params["scheme"] == "https" else 80
        address = resolve(hostname, port or default)
        host_params["host"] = address
        return host_params, pool_kwargs


def session() -> requests.Session:
    """A session for one delivery: its connection is closed after it. (Endpoints are anyone's
    servers: a connection kept alive could go stale or be left out of step by a broken answer,
    and fail the next delivery although the endpoint is up.)"""
    http = HTTPSession(Config(ip_filter_enable=False, ip_filter_allow_loopback_ips=False,
                              never_redirect=True, default_timeout=10.0,
                              user_agent_override=USER_AGENT))
    adapter = PinnedAdapter()
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def timeout() -> tuple[float, float]:
    return (min(5.0, settings.WEBHOOKS["TIMEOUT"]), settings.WEBHOOKS["TIMEOUT"])


def signature(secrets: list[str], webhook_id: str, at: datetime, body: str) -> str:
    """The `webhook-signature` header: one `v1,…` per secret, space-separated."""
    return " ".join(Webhook(secret).sign(webhook_id, at, body) for secret in secrets)


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    ms: int
    retry_after: str | None


def post(url: str, secrets: list[str], webhook_id: str, payload: dict) -> Answer:
    """POST `payload` signed with `secrets`; the answer, its body cut short. Raises Refused,
    or requests' errors when nothing came back (timeouts, connections refused or reset)."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    at = datetime.now(timezone.utc).replace(microsecond=0)
    headers = {"content-type": "application/json", "webhook-id": webhook_id,
               "webhook-timestamp": str(int(at.timestamp())),
               "webhook-signature": signature(secrets, webhook_id, at, body)}
    started = time.monotonic()
    limit = settings.WEBHOOKS["MAX_RESPONSE_CHARS"]
    with session() as http:
        response = http.post(url, data=body.encode(), headers=headers, stream=True,
                             allow_redirects=False, timeout=timeout())
        try:
            raw = response.raw.read(limit * 4, decode_content=True) or b""
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError):
            raw = b""
        finally:
            response.close()  # the rest of a long answer is never read
    text = raw.decode("utf-8", "replace")[:limit]
    return Answer(response.status_code, text, int((time.monotonic() - started) * 1000),
                  response.headers.get("Retry-After"))
