"""Operation pages. One view renders the whole page, or its status panel for htmx."""
import json
from datetime import timedelta
from functools import wraps

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from operations import gates, metrics
from operations.api.views import RetryThrottle
from operations.errors import what_to_do
from operations.models import Channel, Notification, Operation
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


@staff_member_required
def metrics_page(request):
    """How retries go, per kind (or per kind and region), with completions and failures per
    day over two weeks."""
    kind = request.GET.get("kind") or None
    key = request.GET.get("by") if request.GET.get("by") in METRIC_KEYS else None
    rows = metrics.summary(kind=kind, key=key)
    return render(request, "operations/metrics.html", {
        "rows": rows, "by": key, "kind": kind, "keys": METRIC_KEYS,
        "kinds": sorted({row["kind"] for row in metrics.summary()}),
        "charts": daily_charts(metrics.recent(14, kind=kind), days=14)})


def daily_charts(rows, days: int) -> list[dict]:
    """Per kind: one bar pair (completed, failed) per day, heights in percent of the tallest."""
    today = timezone.now().date()
    dates = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    charts = []
    for kind in sorted({row["kind"] for row in rows}):
        per_day = {row["day"]: row for row in rows if row["kind"] == kind}
        tallest = max((row["completed"] + row["failed"] for row in per_day.values()), default=0)
        bars = []
        for day in dates:
            row = per_day.get(day, {"completed": 0, "failed": 0})
            bars.append({"day": day, "completed": row["completed"], "failed": row["failed"],
                         "completed_pct": _pct(row["completed"], tallest),
                         "failed_pct": _pct(row["failed"], tallest)})
        charts.append({"kind": kind, "bars": bars})
    return charts


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
