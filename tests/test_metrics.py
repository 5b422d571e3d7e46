"""Retry metrics, read from the rollups once the rows are counted into them: they match
figures counted by hand, per kind, per region and per period; staff see them on a page over a
window, Prometheus scrapes counters and histograms with a token."""
from datetime import timedelta

import pytest
from django.utils import timezone

from operations import rollups
from operations.models import Grain, Operation
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


def flaky(groups):
    return rollups.summarize(groups[(FLAKY,)])


def test_figures_per_kind_match_the_hand_count(history):
    rollups.fold_all()
    row = flaky(rollups.read(Grain.TOTAL))
    assert (row["finished"], row["completed"], row["failed"]) == (5, 3, 2)
    assert row["success_rate"] == 0.6
    assert row["attempts_per_success"] == round(5 / 3, 2)
    assert row["auto_retry_share"] == 0.4
    assert (row["manual_retries"], row["manual_retries_succeeded"]) == (2, 1)
    # From the histogram's buckets (2, 4 and 10 s): the median falls in (2.5, 5].
    assert 2.5 < row["time_to_success_p50"] <= 5 and 5 < row["time_to_success_p95"] <= 10
    assert row["crashes_recovered"] == 1
    # The processing operation F is live, not finished: it counts nowhere yet.
    live = {(r["kind"], r["status"]): r["n"] for r in rollups.live()}
    assert live[(FLAKY, "processing")] == 1


def test_figures_per_region_match_the_hand_count(history):
    rollups.fold_all()
    groups = rollups.read(Grain.TOTAL, by_key=True)
    us, eu = (rollups.summarize(groups[(FLAKY, region)]) for region in ("us", "eu"))
    assert (us["finished"], us["success_rate"]) == (2, 1.0)
    assert (eu["finished"], eu["success_rate"]) == (3, round(1 / 3, 4))
    assert us["crashes_recovered"] == 1 and eu["crashes_recovered"] == 0


def test_figures_per_day_and_hour(user):
    op(user, status="completed", seconds=3, days_ago=2)
    op(user, status="failed", days_ago=2)
    op(user, status="completed", seconds=5)
    rollups.fold_all()
    days = rollups.read(Grain.DAY, kind=FLAKY, by_period=True)
    assert [(rollups.summarize(f)["completed"], rollups.summarize(f)["failed"])
            for _, f in sorted(days.items())] == [(1, 1), (1, 0)]
    hours = rollups.read(Grain.HOUR, timezone.now() - timedelta(hours=2), kind=FLAKY)
    assert rollups.summarize(hours[(FLAKY,)])["finished"] == 1


def test_a_row_is_counted_once_however_often_the_fold_runs(history):
    assert rollups.fold() > 0
    assert rollups.fold() == 0
    once = rollups.read(Grain.TOTAL)
    rollups.fold_all()
    assert rollups.read(Grain.TOTAL) == once


def test_the_staff_page_shows_the_figures_worst_first_and_one_chart(client, history):
    rollups.fold_all()
    client.force_login(UserFactory(username="staff", is_staff=True))
    page = client.get("/operations/metrics/?by=region").content.decode()
    assert FLAKY in page and "60 %" not in page  # split by region: no kind-wide row
    assert "100 %" in page and "33 %" in page
    assert page.index("33 %") < page.index("100 %")  # the worst first
    assert page.count('class="chart-day"') == 24  # one chart: the last 24 hours, per hour
    week = client.get("/operations/metrics/?window=7d").content.decode()
    assert week.count('class="chart-day"') == 7 and "1.67" in week  # attempts per success
    chart = client.get("/operations/metrics/?window=7d&chart=diagnostics.sleep",
                       HTTP_HX_REQUEST="true").content.decode()
    assert chart.lstrip().startswith('<section class="card" id="metrics-chart">')
    assert chart.count('class="chart-day"') == 7 and "<table>" not in chart


def test_a_custom_window_the_page_cannot_read_says_why(client, history):
    client.force_login(UserFactory(username="staff", is_staff=True))
    page = client.get("/operations/metrics/?window=custom&from=yesterday").content.decode()
    assert "Give the custom window as dates" in page and "the last 24 hours" in page
    day = timezone.now().date()
    rollups.fold_all()
    custom = client.get(f"/operations/metrics/?window=custom&from={day - timedelta(days=1)}"
                        f"&to={day}").content.decode()
    assert "60 %" in custom and custom.count('class="chart-day"') == 2


def test_the_admin_index_links_to_the_metrics(client):
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    assert "/operations/metrics/" in client.get("/admin/").content.decode()


def test_the_metrics_page_is_for_staff_only(web):
    assert web.get("/operations/metrics/").status_code == 302  # to the admin login


def test_prometheus_scrape_needs_staff_or_the_token(client, web, settings, history):
    rollups.fold_all()
    settings.REBOUND = {**settings.REBOUND, "METRICS_TOKEN": "s3cret-token"}
    assert client.get("/metrics").status_code == 403
    assert web.get("/metrics").status_code == 403  # signed in, not staff
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert f'rebound_operations_total{{kind="{FLAKY}",status="failed"}} 2.0' in text
    assert f'rebound_operations_total{{kind="{FLAKY}",status="completed"}} 3.0' in text
    assert f'rebound_attempts_total{{kind="{FLAKY}",outcome="crashed"}} 1.0' in text
    assert f'rebound_manual_retries_total{{channel="auto",kind="{FLAKY}"}} 2.0' in text
    assert f'rebound_time_to_success_seconds_bucket{{kind="{FLAKY}",le="2.5"}} 1.0' in text
    assert f'rebound_time_to_success_seconds_bucket{{kind="{FLAKY}",le="10"}} 3.0' in text
    assert f'rebound_time_to_success_seconds_count{{kind="{FLAKY}"}} 3.0' in text
    assert f'rebound_time_to_success_seconds_sum{{kind="{FLAKY}"}} 16.0' in text
    assert f'rebound_operations_in_state{{kind="{FLAKY}",status="processing"}} 1.0' in text
    assert "# TYPE rebound_operations_total counter" in text


def test_prometheus_scrape_without_a_token_configured_is_staff_only(client, settings):
    settings.REBOUND = {**settings.REBOUND, "METRICS_TOKEN": ""}
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    client.force_login(UserFactory(username="staff", is_staff=True))
    assert client.get("/metrics").status_code == 200
