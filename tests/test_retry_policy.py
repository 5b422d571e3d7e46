"""Backoff, jitter, Retry-After parsing and clamping, error classification."""
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from django.db import OperationalError

from operations.errors import PermanentError, TransientError, classify, parse_retry_after
from operations.retry_policy import RetryPolicy


@pytest.mark.parametrize("attempt,base", [(1, 1.0), (2, 2.0), (3, 4.0)])
def test_backoff_doubles_from_one_second_within_jitter(attempt, base):
    policy = RetryPolicy()
    delays = [policy.backoff(attempt) for _ in range(200)]
    assert all(base <= d <= base * 1.2 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # jitter actually spreads them


def test_backoff_is_capped():
    assert RetryPolicy(max_delay=5, jitter=0).backoff(10) == 5


def test_retry_after_wins_when_longer_than_backoff():
    policy = RetryPolicy(jitter=0)
    assert policy.delay_after(1, 30.0) == 30.0
    assert policy.delay_after(3, 0.5) == 4.0


def test_retry_after_in_seconds():
    assert parse_retry_after("7", cap=300) == 7.0


def test_retry_after_as_http_date():
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
    header = format_datetime(now + timedelta(seconds=45), usegmt=True)
    assert parse_retry_after(header, cap=300, now=now) == 45.0


@pytest.mark.parametrize("value,expected", [("999999", 300.0), ("-5", 0.0),
                                            ("Wed, 21 Oct 2099 07:28:00 GMT", 300.0),
                                            ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_absurd_retry_after_values_are_clamped(value, expected):
    assert parse_retry_after(value, cap=300) == expected


@pytest.mark.parametrize("value", [None, "", "soon", "nan"])
def test_unreadable_retry_after_is_ignored(value):
    assert parse_retry_after(value, cap=300) is None


def test_classification():
    assert classify(TransientError("ai_timeout")).transient
    assert not classify(PermanentError("ai_rejected")).transient
    assert classify(OperationalError("gone")).code == "database_unavailable"
    unknown = classify(ZeroDivisionError("x"))
    assert not unknown.transient and unknown.code == "internal_error"
