"""Operation pages. One view renders the whole page, or its status panel for htmx."""
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from datetime import timezone as dt_timezone
from functools import wraps

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from operations import gates, kinds, rollups
from operations.api.views import RetryThrottle
from operations.errors import what_to_do
from operations.models import Channel, Grain, Notification, Operation
from operations.services import (RetryRefused, check_retryable, find_for, max_manual_retries,
                                 retry_operation)


def page_throttle(throttle_class, refused=None):
    """Decorator: a page view refuses a burst exactly as the API does (same rate, same
    budget per user). `refused(request, message)` renders the refusal for pages that show it
    in place (an upload form); otherwise htmx gets a toast and plain forms a message."""

    def decorate(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            throttle = throttle_class()
            if request.method != "POST" or throttle.allow_request(request, None):
                return view(request, *args, **kwargs)
            wait = max(1, int(throttle.wait() or 1))
            message = f"Too many requests. Try again in {wait} seconds."
            if refused is not None:
                return refused(request, message)
            if request.htmx:
                # 200 with nothing to swap: the toast says why (a 429 would also be logged
                # by the browser as a failed load).
                response = toast(HttpResponse(), "error", message)
                response["HX-Reswap"] = "none"
                return response
            messages.error(request, message)
            return redirect(request.headers.get("Referer") or "/")

        return wrapped

    return decorate


def toast(response, level: str, message: str):
    """Ask the page (htmx) to show a toast once this response is swapped in."""
    response["HX-Trigger"] = json.dumps({"toast": {"level": level, "message": message}})
    return response


def panel_context(operation: Operation, action: str = "Retry") -> dict:
    refusal = None
    if operation.status == "failed":
        try:
            check_retryable(operation)
        except RetryRefused as refused:
            refusal = refused
    last = operation.attempts.order_by("-number").first()
    transient = last is not None and last.outcome in ("transient", "crashed", "timed_out")
    return {
        "operation": operation,
        # A temporary problem (retries ran out) reads differently from a real error.
        "severity": "warning" if transient else "error",
        "what_to_do": what_to_do(operation.error_code) if operation.error_code else "",
        "can_retry": operation.status == "failed" and refusal is None,
        "refusal": refusal,
        "retries_used": operation.retry_number,
        "max_retries": max_manual_retries(),
        "next_retry_label": f"{action} ({operation.retry_number + 1}/{max_manual_retries()})",
    }


def _own_operation(request, operation_id) -> Operation:
    try:
        return find_for(request.user, operation_id)
    except RetryRefused:
        raise Http404("No operation with that id.") from None


@login_required
def operation_list(request):
    operations = Operation.objects.filter(owner=request.user)[:100]
    return render(request, "operations/list.html", {"operations": operations})


def page_context(operation: Operation) -> dict:
    return {**panel_context(operation), "lineage": operation.lineage(),
            "attempts": operation.attempts.all()}


@login_required
def operation_detail(request, operation_id):
    """The operation page; for htmx (its polling while not finished) just its content."""
    operation = _own_operation(request, operation_id)
    template = "operations/detail.html#operation" if request.htmx else "operations/detail.html"
    return render(request, template, page_context(operation))


def retry_from_page(request, operation_id, *, render_panel, redirect_to):
    """The page side of manual retry, shared by every page with a Retry button.

    With htmx: `render_panel(operation)` for the new operation (or, refused, for the old one),
    with a toast. Without JavaScript: a redirect to `redirect_to(operation)` with a message.
    """
    try:
        operation = retry_operation(operation_id, by=request.user, channel=Channel.WEB,
                                    reason=request.POST.get("reason", ""))
        level, message = "success", "Retry started."
    except RetryRefused as refused:
        if refused.status == 404:
            raise Http404(refused.message) from None
        operation = _own_operation(request, operation_id)
        level, message = "error", refused.message
    if request.htmx:
        # 200 even for a refusal: htmx swaps only 2xx answers, and the panel must refresh.
        return toast(render_panel(operation), level, message)
    getattr(messages, level)(request, message)
    return redirect(redirect_to(operation))


@login_required
@require_POST
@page_throttle(RetryThrottle)
def operation_retry(request, operation_id):
    """The Retry button on the operation page."""

    def render_panel(operation):
        response = render(request, "operations/detail.html#operation", page_context(operation))
        response["HX-Push-Url"] = operation.get_absolute_url()
        return response

    return retry_from_page(request, operation_id, render_panel=render_panel,
                           redirect_to=lambda operation: operation.get_absolute_url())


# --- retry metrics (staff) -------------------------------------------------------------------

METRIC_KEYS = ("region",)


@staff_member_required
def gates_page(request):
    """Every outside service operations depend on, with its gate: staff hold one open (a
    provider announced maintenance) or release it, each with a reason that is kept."""
    return render(request, "operations/gates.html", {"rows": gates.board()})


@staff_member_required
@require_POST
def gate_act(request):
    key = request.POST.get("key", "").strip()
    reason = request.POST.get("reason", "").strip()
    action = request.POST.get("action")
    if not key or len(key) > 120 or action not in ("hold", "release"):
        messages.error(request, "Choose a dependency and Hold or Release.")
    elif not reason or len(reason) > 250:
        messages.error(request, "Say why (at most 250 characters): it is kept with the gate's "
                                "history.")
    elif action == "hold":
        gates.hold(key, by=request.user, reason=reason)
        messages.success(request, f"{key} is held: nothing calls it until it is released.")
    elif gates.release(key, by=request.user, reason=reason):
        messages.success(request, f"{key} is released: waiting work starts gradually.")
    else:
        messages.info(request, f"{key} was not held or open: nothing to release.")
    return redirect("operations:gates")


@dataclass(frozen=True)
class Window:
    name: str
    label: str
    grain: str
    since: datetime
    until: datetime | None = None


def metrics_window(request) -> tuple[Window, str]:
    """The window the page shows (last hour, day, 7 or 30 days, or from/to dates), read from
    the query; a window it cannot read falls back to the last day, with a message why."""
    now = timezone.now().astimezone(dt_timezone.utc)
    hour = now.replace(minute=0, second=0, microsecond=0)
    today = hour.replace(hour=0)
    name = request.GET.get("window", "day")
    if name == "hour":
        return Window(name, "the last hour", Grain.HOUR, hour - timedelta(hours=1)), ""
    if name in ("7d", "30d"):
        days = int(name[:-1])
        return Window(name, f"the last {days} days", Grain.DAY,
                      today - timedelta(days=days - 1)), ""
    if name == "custom":
        try:
            start = date.fromisoformat(request.GET.get("from", ""))
            end = date.fromisoformat(request.GET.get("to", "")) if request.GET.get("to") else None
        except ValueError:
            start = end = None
        if start and (end is None or end >= start):
            since = datetime.combine(start, time_of_day.min, dt_timezone.utc)
            until = datetime.combine(end, time_of_day.min, dt_timezone.utc) + timedelta(
                days=1) if end else None
            label = f"{start:%b %-d, %Y} to {end:%b %-d, %Y}" if end else f"since {start:%b %-d, %Y}"
            return Window(name, label, Grain.DAY, since, until), ""
        error = "Give the custom window as dates: from (YYYY-MM-DD), and to on or after it."
        return Window("day", "the last 24 hours", Grain.HOUR, hour - timedelta(hours=23)), error
    return Window("day", "the last 24 hours", Grain.HOUR, hour - timedelta(hours=23)), ""


@staff_member_required
def metrics_page(request):
    """How retries go, per kind (or per kind and region), over a window, worst kinds first,
    read from the rollups; one chart of finished work per hour or day, for the kind chosen."""
    window, error = metrics_window(request)
    if error:
        messages.error(request, error)
    key = request.GET.get("by") if request.GET.get("by") in METRIC_KEYS else None
    groups = rollups.read(window.grain, window.since, window.until, by_key=bool(key))
    rows = [{"kind": ident[0], "title": kinds.find(ident[0]).title,
             "key": ident[1] if key else None, **rollups.summarize(figures)}
            for ident, figures in groups.items()]
    rows.sort(key=lambda row: (row["success_rate"] is None, row["success_rate"] or 0,
                               -row["finished"], row["kind"], row["key"] or ""))
    names = list(dict.fromkeys(row["kind"] for row in rows))  # worst first, once each
    chart_kind = request.GET.get("chart") if request.GET.get("chart") in names else (
        names[0] if names else None)
    template = "operations/metrics.html#chart" if request.htmx else "operations/metrics.html"
    return render(request, template, {
        "rows": rows, "by": key, "keys": METRIC_KEYS, "window": window,
        "windows": [("hour", "Last hour"), ("day", "Last 24 hours"), ("7d", "Last 7 days"),
                    ("30d", "Last 30 days"), ("custom", "Custom dates")],
        "custom_from": request.GET.get("from", ""), "custom_to": request.GET.get("to", ""),
        "chart_kinds": [(name, kinds.find(name).title) for name in names],
        "chart": chart_kind and chart(window, chart_kind)})


def chart(window: Window, kind: str) -> dict:
    """Completed and failed operations of `kind` per period of the window, heights in percent
    of the tallest."""
    per_period = {ident[1]: rollups.summarize(figures) for ident, figures in rollups.read(
        window.grain, window.since, window.until, kind=kind, by_period=True).items()}
    step = timedelta(hours=1) if window.grain == Grain.HOUR else timedelta(days=1)
    end = window.until or timezone.now()
    periods, at = [], window.since
    while at < end and len(periods) < 400:
        periods.append(at)
        at += step
    tallest = max((f["completed"] + f["failed"] for f in per_period.values()), default=0)
    bars = []
    for at in periods:
        figures = per_period.get(at, {"completed": 0, "failed": 0})
        bars.append({"at": at, "completed": figures["completed"], "failed": figures["failed"],
                     "completed_pct": _pct(figures["completed"], tallest),
                     "failed_pct": _pct(figures["failed"], tallest)})
    return {"kind": kind, "title": kinds.find(kind).title, "bars": bars,
            "hourly": window.grain == Grain.HOUR}


def _pct(part, whole) -> int:
    return round(100 * part / whole) if whole else 0


# --- notifications ---------------------------------------------------------------------------

@login_required
def notification_list(request):
    notifications = (Notification.objects.filter(owner=request.user)
                     .select_related("operation")[:100])
    return render(request, "operations/notifications.html", {"notifications": notifications})


def _render_notification(request, notification):
    """The item, and the header's unread count swapped out of band."""
    return render(request, "operations/notifications.html#notification",
                  {"notification": notification, "oob_count": True})


@login_required
@require_POST
def notification_read(request, notification_id):
    notification = get_object_or_404(Notification, pk=notification_id, owner=request.user)
    Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(
        read_at=timezone.now())
    notification.refresh_from_db()
    if request.htmx:
        return _render_notification(request, notification)
    return redirect("notifications:list")


@login_required
@require_POST
def notifications_read_all(request):
    marked = Notification.objects.filter(owner=request.user, read_at__isnull=True).update(
        read_at=timezone.now())
    messages.success(request, f"Marked {marked} notification{'s' if marked != 1 else ''} as read.")
    return redirect("notifications:list")


# --- errors outside any view -----------------------------------------------------------------

def _problem_json(status: int, code: str, detail: str):
    from django.http import JsonResponse

    from operations.api.problems import TITLES

    return JsonResponse({"type": f"about:blank#{code}", "title": TITLES.get(status, "Error"),
                         "status": status, "code": code, "detail": detail},
                        status=status, content_type="application/problem+json")


def not_found(request, exception=None):
    """A URL that matches nothing: a problem body under /api/, a page elsewhere."""
    if request.path.startswith("/api/"):
        return _problem_json(404, "not_found", "No such resource.")
    return render(request, "404.html", status=404)


def bad_request(request, exception=None):
    """A request Django refused before any view (a body over the size limit, say)."""
    if request.path.startswith("/api/"):
        return _problem_json(400, "bad_request", "This request could not be read.")
    return HttpResponse("<h1>Bad request</h1><p>This request could not be read.</p>",
                        status=400)


def server_error(request):
    """Never a traceback: a problem body under /api/, a page elsewhere (the detail is logged)."""
    if request.path.startswith("/api/"):
        return _problem_json(500, "internal_error",
                             "Something went wrong on our side. Try again later.")
    return render(request, "500.html", status=500)
