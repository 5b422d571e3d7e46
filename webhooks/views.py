"""Webhook pages: your endpoints, a new one (its secret shown once), and each endpoint with
its recent deliveries, Resend, Send test event, Resend what it missed, turn off or on, rotate
the secret, delete. Every action also works as a plain form without JavaScript."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from operations.api.views import RetryThrottle
from operations.events import CATALOGUE
from operations.models import Channel
from operations.services import RetryRefused
from operations.views import page_throttle, toast
from webhooks import services
from webhooks.api import status_of
from webhooks.models import Endpoint

SHOWN_ONCE = "webhooks:secret"  # session key: {endpoint id: secret} until its page shows it


def _endpoint(request, endpoint_id) -> Endpoint:
    try:
        return get_object_or_404(Endpoint, pk=endpoint_id, owner=request.user)
    except (ValueError, TypeError):
        raise Http404("No webhook endpoint with that id.") from None


def _show_secret_once(request, endpoint: Endpoint) -> None:
    request.session[SHOWN_ONCE] = {str(endpoint.pk): endpoint.secret}


@login_required
def endpoint_list(request):
    endpoints = Endpoint.objects.filter(owner=request.user)
    return render(request, "webhooks/list.html", {"endpoints": endpoints})


@login_required
def endpoint_new(request):
    values, error = {"url": "", "description": "", "event_types": list(CATALOGUE)}, None
    if request.method == "POST":
        values = {"url": request.POST.get("url", "").strip(),
                  "description": request.POST.get("description", "")[:200],
                  "event_types": request.POST.getlist("event_types")}
        try:
            endpoint = services.create_endpoint(request.user, **values)
        except RetryRefused as refused:
            error = refused
        else:
            _show_secret_once(request, endpoint)
            messages.success(request, "Endpoint added. Copy its signing secret now.")
            return redirect(endpoint)
    return render(request, "webhooks/new.html", {"values": values, "error": error,
                                                 "catalogue": CATALOGUE.items()})


def detail_context(request, endpoint: Endpoint) -> dict:
    deliveries = services.deliveries(endpoint)
    for delivery in deliveries:
        delivery.state = status_of(delivery.chain.latest if delivery.chain else None)
    busy = any(d.state in ("pending", "delivering", "retrying") for d in deliveries)
    return {"endpoint": endpoint, "deliveries": deliveries, "busy": busy,
            "missed": len(services.missed(endpoint)) if endpoint.enabled else 0,
            "catalogue": CATALOGUE}


@login_required
def endpoint_detail(request, endpoint_id):
    endpoint = _endpoint(request, endpoint_id)
    secret = request.session.get(SHOWN_ONCE, {}).get(str(endpoint.pk))
    if secret:
        request.session.pop(SHOWN_ONCE)  # shown once: a reload no longer shows it
    return render(request, "webhooks/endpoint.html",
                  {**detail_context(request, endpoint), "secret": secret})


@login_required
def endpoint_deliveries(request, endpoint_id):
    """The deliveries table alone (htmx polls it while something is on its way)."""
    endpoint = _endpoint(request, endpoint_id)
    return render(request, "webhooks/endpoint.html#deliveries",
                  detail_context(request, endpoint))


def _done(request, endpoint, level: str, message: str):
    if request.htmx:
        response = render(request, "webhooks/endpoint.html#deliveries",
                          detail_context(request, endpoint))
        return toast(response, level, message)
    getattr(messages, level)(request, message)
    return redirect(endpoint)


def _attempt(request, endpoint, act):
    """Run `act()`, which returns (level, message); a refusal is shown instead."""
    try:
        level, message = act()
    except RetryRefused as refused:
        level, message = "error", refused.message
    return _done(request, endpoint, level, message)


@login_required
@require_POST
@page_throttle(RetryThrottle)
def delivery_resend(request, endpoint_id, delivery_id):
    endpoint = _endpoint(request, endpoint_id)
    delivery = get_object_or_404(endpoint.deliveries, pk=delivery_id)

    def resend():
        services.resend(delivery, by=request.user, channel=Channel.WEB,
                        reason=request.POST.get("reason", ""))
        return "success", f"Resending {delivery.event.type}."

    return _attempt(request, endpoint, resend)


@login_required
@require_POST
def endpoint_test(request, endpoint_id):
    endpoint = _endpoint(request, endpoint_id)

    def send():
        services.send_test(endpoint)
        return "success", "Test event on its way."

    return _attempt(request, endpoint, send)


@login_required
@require_POST
@page_throttle(RetryThrottle)
def endpoint_resend_missed(request, endpoint_id):
    endpoint = _endpoint(request, endpoint_id)

    def resend_missed():
        report = services.resend_missed(endpoint, by=request.user, channel=Channel.WEB)
        retried, skipped = len(report["retried"]), sum(report["skipped"].values())
        return ("success" if retried else "error",
                f"Resending {retried} missed deliver{'y' if retried == 1 else 'ies'}"
                + (f"; {skipped} skipped (at their retry limit or already resent)."
                   if skipped else "."))

    return _attempt(request, endpoint, resend_missed)


@login_required
@require_POST
def endpoint_toggle(request, endpoint_id):
    endpoint = _endpoint(request, endpoint_id)
    turn_on = not endpoint.enabled
    services.update_endpoint(endpoint, enabled=turn_on)
    missed = len(services.missed(endpoint)) if turn_on else 0
    messages.success(request, "Endpoint turned on." + (
        f" It missed {missed} deliver{'y' if missed == 1 else 'ies'}: resend them below."
        if missed else "") if turn_on else "Endpoint turned off: nothing is sent to it.")
    return redirect(endpoint)


@login_required
@require_POST
def endpoint_rotate(request, endpoint_id):
    endpoint = services.rotate_secret(_endpoint(request, endpoint_id))
    _show_secret_once(request, endpoint)
    messages.success(request, "New signing secret: the old one signs beside it for 24 hours.")
    return redirect(endpoint)


@login_required
@require_POST
def endpoint_delete(request, endpoint_id):
    endpoint = _endpoint(request, endpoint_id)
    url = endpoint.url
    services.delete_endpoint(endpoint)
    messages.success(request, f"Endpoint {url} deleted.")
    return redirect("webhooks:list")
