"""The dashboard: upload an export, see what the quick pass found, follow the full pass in its
banner, retry it when it failed, read the memory when it is done."""
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from imports.api import UploadThrottle
from imports.export_reader import ExportRejected, too_large
from imports.models import Profile
from imports.passes import accept_upload
from operations.api.views import RetryThrottle
from operations.models import Notification, Operation
from operations.views import page_throttle, retry_from_page


DISMISSED = "dismissed_failure"


def banner_context(profile: Profile | None, request=None) -> dict:
    operation = profile.full_pass if profile else None
    status = profile.full_pass_status if profile else None
    # A dismissed failure stays hidden; another failure (a retry that failed, a new upload's
    # pass) is another operation, and its banner shows again.
    dismissed = (status == "failed" and request is not None
                 and request.session.get(DISMISSED) == str(operation.pk))
    return {"profile": profile, "full_pass": operation, "full_pass_status": status,
            "dismissed": dismissed, "eta_seconds": _eta_seconds(operation)}


def _eta_seconds(operation) -> int | None:
    """Remaining time at this attempt's pace (conversations done since it started)."""
    if operation is None or operation.status != "processing" or not operation.progress_total:
        return None
    attempt = operation.attempts.order_by("-number").first()
    start = (operation.checkpoint or {}).get("resumed_from", 0)
    done_now = operation.progress_done - start
    if attempt is None or done_now <= 0:
        return None
    elapsed = (timezone.now() - attempt.started_at).total_seconds()
    return round(elapsed / done_now * max(operation.progress_total - operation.progress_done, 0))


def export_context(profile: Profile | None) -> dict:
    quick = profile.quick_pass if profile else None
    return {"profile": profile, "counting": quick is not None and not quick.is_terminal}


def render_dashboard(request, upload_error: ExportRejected | None = None):
    profile = Profile.objects.filter(user=request.user).first()
    if profile is not None:
        profile.read_passes_first()
    context = {**banner_context(profile, request), **export_context(profile)}
    part = request.GET.get("part") if request.htmx else None
    if part == "banner":
        return render(request, "imports/dashboard.html#full-pass-banner", context)
    if part == "export":
        return render(request, "imports/dashboard.html#export-summary", context)
    context.update(recent=Operation.objects.filter(owner=request.user)[:8],
                   failures=Notification.objects.filter(
                       owner=request.user, read_at__isnull=True,
                       event=Notification.Event.FAILED).select_related("operation")[:5],
                   max_upload_mb=settings.IMPORTS["MAX_UPLOAD_BYTES"] // (1024 * 1024),
                   upload_error=upload_error)
    # A refused upload re-renders the page with the reason next to the form (200, as a form
    # with errors is: the browser has nothing to report as a failed load).
    return render(request, "imports/dashboard.html", context)


@login_required
def dashboard(request):
    """The whole page, or (htmx, ?part=banner) just the full-pass banner."""
    return render_dashboard(request)


def _upload_throttled(request, message):
    return render_dashboard(request, upload_error=ExportRejected("throttled", message,
                                                                 status=429))


@login_required
@require_POST
@page_throttle(UploadThrottle, refused=_upload_throttled)
def upload(request):
    """Accept an export (page form). Refusals re-render the dashboard with what to do."""
    try:
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.IMPORTS["MAX_UPLOAD_BYTES"] + 65536:
            raise too_large()  # refuse before reading the body
        file = request.FILES.get("file")
        if file is None:
            raise ExportRejected("no_file", "Choose your export file first.")
        accept_upload(request.user, file, name=file.name)
    except ExportRejected as refused:
        return render_dashboard(request, upload_error=refused)
    messages.success(request, "Export received. Building your memory now.")
    return redirect("imports:dashboard")


@login_required
@require_POST
@page_throttle(RetryThrottle)
def retry_full_pass(request):
    """The "Retry deep memory" button: answers with the banner (htmx) or a redirect."""
    profile = Profile.objects.filter(user=request.user).first()
    if profile is None or profile.full_pass is None:
        raise Http404("No full pass to retry.")

    def render_banner(operation):
        return render(request, "imports/dashboard.html#full-pass-banner",
                      banner_context(Profile.objects.get(pk=profile.pk), request))

    return retry_from_page(request, profile.full_pass.pk, render_panel=render_banner,
                           redirect_to=lambda operation: "imports:dashboard")


@login_required
@require_POST
def dismiss_failure(request):
    """Hide the failure banner of the full pass that failed; it shows again for the next."""
    profile = Profile.objects.filter(user=request.user).first()
    if profile is None or profile.full_pass is None:
        raise Http404("No full pass.")
    request.session[DISMISSED] = str(profile.full_pass.pk)
    if request.htmx:
        return render(request, "imports/dashboard.html#full-pass-banner",
                      banner_context(profile, request))
    return redirect("imports:dashboard")
