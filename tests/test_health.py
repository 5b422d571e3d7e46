"""/healthz (the process) and /readyz (database, broker, dispatcher heartbeat), for load
balancers and orchestrators. An outside service that is down does not make the app unready."""
import socket

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from operations.lease import this_host
from operations.models import Host

JSON = {"HTTP_ACCEPT": "application/json"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_healthz_answers_without_touching_the_database(client, db):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/healthz", **JSON)
    assert response.status_code == 200 and response.json() == {"Process()": "OK"}
    assert len(queries) == 0


@pytest.mark.django_db(transaction=True)
def test_readyz_is_200_when_everything_answers(client):
    Host.beat(this_host(), dispatcher=True)
    response = client.get("/readyz", **JSON)
    assert response.status_code == 200, response.json()
    assert set(response.json()) == {"Database(alias='default')", "OrmBroker()", "Dispatcher()"}


@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_naming_a_silent_dispatcher(client):
    response = client.get("/readyz", **JSON)
    assert response.status_code == 503
    assert "no dispatcher heartbeat" in response.json()["Dispatcher()"]
    assert response.json()["Database(alias='default')"] == "OK"


@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_when_a_dispatcher_stopped_on_purpose(client):
    Host.beat(this_host(), dispatcher=True)
    Host.stop(this_host())
    assert client.get("/readyz", **JSON).status_code == 503


@pytest.mark.django_db(transaction=True)
def test_readyz_stays_ready_while_the_ai_provider_is_down_and_its_gate_open(client, settings):
    from operations import gates

    settings.INFERENCE = {**settings.INFERENCE,
                          "BASE_URL": f"http://127.0.0.1:{closed_port()}/v1"}
    gates.hold("inference:eu-west", by=None, reason="the provider is down")
    Host.beat(this_host(), dispatcher=True)
    response = client.get("/readyz", **JSON)
    assert response.status_code == 200, response.json()


@pytest.mark.django_db(transaction=True)
def test_readyz_asks_the_redis_broker_when_it_is_the_broker(client, settings):
    Host.beat(this_host(), dispatcher=True)
    settings.REDIS_URL = "redis://127.0.0.1:6379/15"
    assert client.get("/readyz", **JSON).json()["RedisBroker()"] == "OK"
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    response = client.get("/readyz", **JSON)
    assert response.status_code == 503 and "Redis broker" in response.json()["RedisBroker()"]


def test_check_deploy_is_clean_with_the_production_settings_the_readme_documents():
    import os
    import secrets
    import subprocess
    import sys

    from tests.processes import ROOT

    env = {**os.environ, "DJANGO_SECURE": "true", "DJANGO_DEBUG": "false",
           "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
           "DJANGO_ALLOWED_HOSTS": "rebound.example.com",
           "DJANGO_CSRF_TRUSTED_ORIGINS": "https://rebound.example.com"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests' process only
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy",
                             "--fail-level", "WARNING"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_probes_are_not_redirected_to_https(client, settings, db):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/").status_code == 301
