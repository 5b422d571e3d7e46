from django import template

register = template.Library()


@register.inclusion_tag("operations/_failure.html", takes_context=True)
def failure_panel(context, operation, retry_url, target, action="Retry", heading="",
                  reassurance=""):
    """What failed, what happened, what to do, and the Retry button (or why there is none)
    for a failed operation; the button posts to `retry_url` and htmx swaps the answer into
    `target`. `heading` names what failed ("Building your deep memory failed")."""
    from operations.views import panel_context

    return {**panel_context(operation, action), "retry_url": retry_url, "target": target,
            "heading": heading or f"{operation.kind_spec.title} failed",
            "reassurance": reassurance, "csrf_token": context.get("csrf_token")}


@register.filter
def duration_minutes(value) -> str:
    """A timedelta as whole minutes for people: "1 minute", "15 minutes"."""
    minutes = max(1, round(value.total_seconds() / 60))
    return f"{minutes} minute{'' if minutes == 1 else 's'}"
