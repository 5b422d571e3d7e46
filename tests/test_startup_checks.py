"""A delivery configuration that would run operations twice is refused at start-up."""
import subprocess
import sys

from operations.checks import q_cluster_errors
from tests.processes import ROOT

SAFE = {"timeout": 600, "retry": 660, "max_attempts": 1, "ack_failures": True}


def test_the_shipped_configuration_passes():
    from django.conf import settings

    assert q_cluster_errors(settings.Q_CLUSTER) == []


def test_retry_not_above_timeout_is_an_error():
    errors = q_cluster_errors({**SAFE, "retry": 600})
    assert [e.id for e in errors] == ["rebound.E002"]
    assert "must be larger than 'timeout'" in errors[0].msg


def test_django_q2_retrying_on_its_own_is_an_error():
    ids = [e.id for e in q_cluster_errors({**SAFE, "max_attempts": 0, "ack_failures": False})]
    assert ids == ["rebound.E003", "rebound.E004"]


def test_qcluster_refuses_to_start_with_retry_below_timeout(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "qcluster"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**__import__("os").environ, "REBOUND_TASK_TIMEOUT": "120",
                         "REBOUND_TASK_RETRY": "60", "REBOUND_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "rebound.E002" in result.stderr and "must be larger than 'timeout'" in result.stderr
