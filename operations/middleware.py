"""The database going away (restart, failover) answers 503 with a clear body, never a 500; data
the database cannot store (a NUL character in text, say) answers 400."""
from django.db import DataError, OperationalError
from django.http import HttpResponse, JsonResponse

from operations.refusals import declare

SERVICE_UNAVAILABLE = declare("service_unavailable", 503, "Rebound's database is briefly "
                              "unavailable. Try again in a few seconds.")


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DataError):
            return _unstorable(request)
        if not isinstance(exception, OperationalError):
            return None
        if request.path.startswith("/api/"):
            response = JsonResponse(
                {"type": f"about:blank#{SERVICE_UNAVAILABLE}", "title": "Service unavailable",
                 "status": 503, "code": SERVICE_UNAVAILABLE,
                 "detail": "Rebound's database is briefly unavailable. Try again in a few seconds."},
                status=503, content_type="application/problem+json")
        else:
            response = HttpResponse(
                "<h1>Back in a moment</h1><p>Rebound's database is briefly unavailable. "
                "Reload the page in a few seconds.</p>", status=503)
        response["Retry-After"] = "5"
        return response


def _unstorable(request):
    detail = ("Some of the data sent cannot be stored (a NUL character in text, for example). "
              "Remove it and try again.")
    if request.path.startswith("/api/"):
        return JsonResponse({"type": "about:blank#invalid", "title": "Bad request",
                             "status": 400, "code": "invalid", "detail": detail},
                            status=400, content_type="application/problem+json")
    return HttpResponse(f"<h1>That could not be saved</h1><p>{detail}</p>", status=400)
