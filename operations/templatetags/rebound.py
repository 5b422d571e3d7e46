from django import template

register = template.Library()


@register.inclusion_tag("operations/_failure.html", takes_context=True)
def failure_panel(context, operation, retry_url, target, action="Retry"):
    """What happened, what to do, and the Retry button (or why there is none) for a failed
    operation; the button posts to `retry_url` and htmx swaps the answer into `target`."""
    from operations.views import panel_context

    return {**panel_context(operation, action), "retry_url": retry_url, "target": target,
            "csrf_token": context.get("csrf_token")}
