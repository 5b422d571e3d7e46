"""The operation page: status panel, attempts, lineage, Retry button with and without htmx."""
import json

import pytest

from operations.models import Operation, Status
from tests.factories import OperationFactory

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def test_failed_operation_page_shows_what_happened_and_a_retry_button(web, user):
    operation = OperationFactory(owner=user, failed=True)
    page = web.get(operation.get_absolute_url()).content.decode()
    assert "AI service unavailable" in page and "What to do:" in page
    assert "Retry (1/3)" in page and "Retrying…" in page
    assert 'hx-disabled-elt="find button"' in page
    assert "10.0.0.7" not in page  # the server-side detail names a host


def test_htmx_request_gets_only_the_operation_content(web, user):
    operation = OperationFactory(owner=user, status=Status.PROCESSING, progress_done=3,
                                 progress_total=12)
    panel = web.get(operation.get_absolute_url(), **HTMX).content.decode()
    assert panel.lstrip().startswith('<div id="operation"') and "Attempts" in panel
    assert "<html" not in panel and "3 / 12" in panel
    assert 'hx-trigger="every 1s"' in panel


def test_polling_stops_once_the_operation_is_finished(web, user):
    operation = OperationFactory(owner=user, completed=True)
    panel = web.get(operation.get_absolute_url(), **HTMX).content.decode()
    assert "hx-trigger" not in panel


def test_htmx_retry_swaps_in_the_new_operation_and_asks_for_a_toast(web, user):
    operation = OperationFactory(owner=user, failed=True)
    response = web.post(f"{operation.get_absolute_url()}retry", {"reason": "try again"}, **HTMX)
    child = Operation.objects.get(parent=operation)
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"])["toast"]["level"] == "success"
    assert response["HX-Push-Url"] == child.get_absolute_url()
    assert child.channel == "web" and child.retry_reason == "try again"
    assert 'hx-trigger="every 1s"' in response.content.decode()  # the child is pending: poll


def test_htmx_retry_refusal_keeps_the_panel_and_toasts_why(web, user):
    operation = OperationFactory(owner=user, failed=True)
    OperationFactory(owner=user, parent=operation, root=operation, retry_number=1, is_retry=True)
    response = web.post(f"{operation.get_absolute_url()}retry", **HTMX)
    toast = json.loads(response["HX-Trigger"])["toast"]
    assert toast["level"] == "error" and "already been retried" in toast["message"]


def test_retry_works_as_a_plain_form_without_javascript(web, user):
    operation = OperationFactory(owner=user, failed=True)
    response = web.post(f"{operation.get_absolute_url()}retry")
    child = Operation.objects.get(parent=operation)
    assert response.status_code == 302 and response["Location"] == child.get_absolute_url()


def test_retry_button_is_disabled_at_the_limit_and_says_why(web, user):
    operation = OperationFactory(owner=user, failed=True, retry_number=3, is_retry=True)
    page = web.get(operation.get_absolute_url()).content.decode()
    assert "<button type=\"button\" disabled>Retry</button>" in page
    assert "the most allowed" in page


def test_page_post_without_csrf_is_403(user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    operation = OperationFactory(owner=user, failed=True)
    assert client.post(f"{operation.get_absolute_url()}retry").status_code == 403
    assert not Operation.objects.filter(parent=operation).exists()


def test_someone_elses_operation_page_is_404(web, other_user):
    operation = OperationFactory(owner=other_user, failed=True)
    assert web.get(operation.get_absolute_url()).status_code == 404
    assert web.post(f"{operation.get_absolute_url()}retry").status_code == 404


def test_retry_reason_with_markup_is_rendered_escaped(web, user):
    operation = OperationFactory(owner=user, failed=True)
    child = OperationFactory(owner=user, parent=operation, root=operation, retry_number=1,
                             is_retry=True, retry_reason="<script>alert(1)</script>")
    page = web.get(child.get_absolute_url()).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_pages_need_a_login(client, user):
    operation = OperationFactory(owner=user, failed=True)
    assert client.get(operation.get_absolute_url()).status_code == 302
