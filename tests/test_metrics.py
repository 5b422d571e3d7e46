"""Retry metrics, computed from the rows: they match figures counted by hand, per kind, per
region and per day; staff see them on a page, Prometheus scrapes them with a token."""
from datetime import timedelta

import pytest
from django.utils import timezone

from operations import metrics
from operations.models import Operation
from tests.factories import AttemptFactory, OperationFactory, UserFactory

pytestmark = pytest.mark.django_db
FLAKY = "diagnostics.flaky"


def op(user, *, status, attempts=1, seconds=None, region="us", is_retry=False, kind=FLAKY,
       days_ago=0):
    created = timezone.now() - timedelta(days=days_ago, minutes=5)
    operation = OperationFactory(owner=user, kind=kind, status=status, attempt_count=attempts,
                                 is_retry=is_retry, retry_number=int(is_retry),
                                 input={"region": region})
    finished = created + timedelta(seconds=seconds) if seconds is not None else (
        created + timedelta(seconds=1) if status in ("completed", "failed") else None)
    Operation.objects.filter(pk=operation.pk).update(created_at=created, finished_at=finished)
    return operation


@pytest.fixture
def history(user):
    """Counted by hand:
    A completed, 1 attempt, 2 s, us       D completed manual retry, 1 attempt, 4 s, eu
    B completed, 3 attempts (1 crashed), 10 s, us   E failed manual retry, 1 attempt, eu
    C failed, 4 attempts, eu              F processing, us
    G another kind, completed in 1 s."""
    op(user, status="completed", seconds=2)
    b = op(user, status="completed", attempts=3, seconds=10)
    AttemptFactory(operation=b, number=1, outcome="crashed")
    AttemptFactory(operation=b, number=2, outcome="transient")
    op(user, status="failed", attempts=4, region="eu")
    op(user, status="completed", seconds=4, region="eu", is_retry=True)
    op(user, status="failed", region="eu", is_retry=True)
    op(user, status="processing")
    op(user, status="completed", seconds=1, kind="diagnostics.sleep")


def flaky(rows):
    return [row for row in rows if row["kind"] == FLAKY]


def test_figures_per_kind_match_the_hand_count(history):
    [row] = flaky(metrics.summary())
    assert (row["operations"], row["completed"], row["failed"]) == (6, 3, 2)
    assert row["success_rate"] == 0.6
    assert row["attempts_per_success"] == round(5 / 3, 4)
    assert row["auto_retry_share"] == 0.4
    assert (row["manual_retries"], row["manual_retries_succeeded"]) == (2, 1)
    assert (row["time_to_success_p50"], row["time_to_success_p95"]) == (4.0, 9.4)
    assert row["crashes_recovered"] == 1


def test_figures_per_region_match_the_hand_count(history):
    rows = {row["key"]: row for row in flaky(metrics.summary(key="region"))}
    assert (rows["us"]["operations"], rows["us"]["success_rate"]) == (3, 1.0)
    assert (rows["eu"]["operations"], rows["eu"]["success_rate"]) == (3, round(1 / 3, 4))
    assert rows["us"]["crashes_recovered"] == 1 and rows["eu"]["crashes_recovered"] == 0
    assert rows["eu"]["time_to_success_p50"] == 4.0


def test_figures_per_day(user):
    op(user, status="completed", seconds=3, days_ago=2)
    op(user, status="failed", days_ago=2)
    op(user, status="completed", seconds=5)
    rows = flaky(metrics.recent(days=7))
    assert [(row["completed"], row["failed"]) for row in rows] == [(1, 1), (1, 0)]
    assert rows[0]["day"] < rows[1]["day"]


def test_the_staff_page_shows_the_figures_and_a_chart_per_day(client, history):
    client.force_login(UserFactory(username="staff", is_staff=True))
    page = client.get("/operations/metrics/?by=region").content.decode()
    assert FLAKY in page and "60 %" not in page  # split by region: no kind-wide row
    assert "100 %" in page and "33 %" in page
    assert page.count('class="chart-day"') == 2 * 14  # two kinds, fourteen days each


def test_the_admin_index_links_to_the_metrics(client):
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    assert "/operations/metrics/" in client.get("/admin/").content.decode()


def test_the_metrics_page_is_for_staff_only(web):
    assert web.get("/operations/metrics/").status_code == 302  # to the admin login


def test_prometheus_scrape_needs_staff_or_the_token(client, web, settings, history):
    settings.REBOUND = {**settings.REBOUND, "METRICS_TOKEN": "s3cret-token"}
    assert client.get("/metrics").status_code == 403
    assert web.get("/metrics").status_code == 403  # signed in, not staff
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert f'rebound_success_rate{{kind="{FLAKY}"}} 0.6' in text
    assert f'rebound_operations{{kind="{FLAKY}",status="failed"}} 2.0' in text
    assert f'rebound_time_to_success_seconds{{kind="{FLAKY}",quantile="0.5"}} 4.0' in text
    assert f'rebound_success_rate_by_region{{kind="{FLAKY}",region="us"}} 1.0' in text


def test_prometheus_scrape_without_a_token_configured_is_staff_only(client, settings):
    settings.REBOUND = {**settings.REBOUND, "METRICS_TOKEN": ""}
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    client.force_login(UserFactory(username="staff", is_staff=True))
    assert client.get("/metrics").status_code == 200
