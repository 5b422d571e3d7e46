"""What every page's header shows: the number of unread notifications."""
from operations.models import Notification


def notifications(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # A callable: templates that never show the count (htmx partials) cost no query.
    return {"unread_notifications": lambda: Notification.objects.filter(
        owner=user, read_at__isnull=True).count()}
