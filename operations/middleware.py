"""The database going away (restart, failover) answers 503 with a clear body, never a 500."""
from django.db import OperationalError
from django.http import HttpResponse, JsonResponse


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError):
            return None
        if request.path.startswith("/api/"):
            response = JsonResponse(
                {"type": "about:blank#service_unavailable", "title": "Service unavailable",
                 "status": 503, "code": "service_unavailable",
                 "detail": "Rebound's database is briefly unavailable. Try again in a few seconds."},
                status=503, content_type="application/problem+json")
        else:
            response = HttpResponse(
                "<h1>Back in a moment</h1><p>Rebound's database is briefly unavailable. "
                "Reload the page in a few seconds.</p>", status=503)
        response["Retry-After"] = "5"
        return response
