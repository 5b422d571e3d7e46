import os

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config, items):
    # The browser tests run last: Playwright keeps an event loop in the main thread until the
    # session ends, and Django's async views cannot be called from a thread that has one.
    # The refusal registry's check reads what every API test before it was answered, so it
    # runs after them.
    items.sort(key=lambda item: ("/browser/" in str(item.fspath),
                                 item.get_closest_marker("after_api_tests") is not None))
    if os.environ.get("DATABASE_URL", "").startswith(("postgres", "postgresql")):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: real concurrent connections or processes "
                                   "sharing one database (set DATABASE_URL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def refusals_answered():
    """Every refusal the test clients were answered by the API: (method, path, code)."""
    from django.test import Client

    from tests import refusal_log

    original = Client.request

    def request(self, **environ):
        response = original(self, **environ)
        refusal_log.note(environ, response)
        return response

    Client.request = request
    yield refusal_log.SEEN
    Client.request = original


@pytest.fixture(scope="session", autouse=True)
def flush_never_loses_a_deadlock():
    """Processes a test starts (a stack, a cluster) may still be working while the test's
    database is flushed. TRUNCATE takes every table in turn, so it can close a lock cycle with
    one of their transactions; PostgreSQL then aborts whichever waiter checks first. The test
    process checks last, so the process's transaction is the one aborted (and retried, as
    every database error is there), never the flush that separates two tests."""
    from django.db.backends.signals import connection_created

    def patient(sender, connection, **kwargs):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET deadlock_timeout = '20s'")

    connection_created.connect(patient, weak=False, dispatch_uid="patient-flush")
    yield
    connection_created.disconnect(dispatch_uid="patient-flush")


@pytest.fixture
def user(db):
    return UserFactory(username="alice")


@pytest.fixture
def other_user(db):
    return UserFactory(username="mallory")


@pytest.fixture
def api(user):
    """An API client authenticated with alice's token."""
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def web(client, user):
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def one_delivery_one_operation(settings):
    """In the test process `runner.run(x)` runs x alone (no draining of the queue), so a test
    says which operation runs when; processes the tests start drain as configured."""
    settings.REBOUND = {**settings.REBOUND, "DRAIN_SECONDS": 0.0}


@pytest.fixture(autouse=True)
def fresh_gates():
    """Each test reads the gates afresh (a process keeps its view for up to a second)."""
    from operations import gates

    gates.forget()
    yield
    gates.forget()


@pytest.fixture(autouse=True)
def fresh_throttles():
    """Throttle counts live in the cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def no_dns_for_webhooks(settings):
    """Webhook URLs resolve from a fixed list in tests (empty: only address literals) and
    reach no public address, so no test ever sends a packet off this machine (a DNS query or
    a delivery); receivers on 127.0.0.1 are allowed."""
    settings.WEBHOOKS = {**settings.WEBHOOKS, "HOSTS": {}, "PUBLIC": False,
                         "ALLOWED_NETWORKS": ["127.0.0.1/32"], "TIMEOUT": 2.0}


@pytest.fixture(scope="module")
def receiver():
    """A webhook receiver process on loopback (tests/webhook_receiver.py), one per module."""
    from tests.webhooks_helpers import receiver_process

    with receiver_process() as running:
        yield running


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The default PBKDF2 costs ~0.5 s per user; tests do not test hashing strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


from operations.kinds import register  # noqa: E402


@register("tests.needs_input", input_available=lambda input: input.get("present", True))
def needs_input(context):
    return {}


@pytest.fixture(scope="session")
def inference_service(tmp_path_factory):
    """The project's local inference service, a real server process on a free loopback port."""
    import socket
    import subprocess
    import sys

    import requests

    from tests.processes import ROOT, kill_group, wait_for

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(tmp_path_factory.mktemp("inference") / "service.log", "w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "inference_service", "--port", str(port)], cwd=ROOT,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "REBOUND_INFERENCE_KEY": "test-key"})
    url = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return requests.get(f"{url}/health", timeout=0.5).ok
        except requests.ConnectionError:
            return False

    wait_for(healthy, 30, what="inference service")
    yield url
    kill_group(process)
    log.close()


@pytest.fixture
def ai(inference_service, settings):
    """Point the inference client at the local service; `ai.faults(...)` injects failures."""
    import requests

    settings.INFERENCE = {**settings.INFERENCE, "BASE_URL": f"{inference_service}/v1",
                          "API_KEY": "test-key", "CONNECT_TIMEOUT": 1.0, "READ_TIMEOUT": 2.0,
                          "DEADLINE": 3.0}
    requests.delete(f"{inference_service}/_faults", timeout=5)

    class Service:
        url = inference_service

        def faults(self, **spec):
            requests.post(f"{inference_service}/_faults", json=spec, timeout=5).raise_for_status()

    yield Service()
    requests.delete(f"{inference_service}/_faults", timeout=5)


@pytest.fixture
def export_storage(settings, tmp_path):
    """Stored exports go to this test's own folder."""
    location = tmp_path / "uploads"
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(location)}}}
    return location


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A real S3-compatible server (SeaweedFS) for the session."""
    from tests.seaweed import seaweedfs

    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as endpoint:
        yield endpoint


@pytest.fixture
def object_storage(seaweed, settings):
    """Uploads go to a fresh bucket of the real S3 server for this test."""
    import uuid

    from tests.seaweed import client

    bucket = f"rebound-{uuid.uuid4().hex[:12]}"
    client(seaweed).create_bucket(Bucket=bucket)
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
            "bucket_name": bucket, "endpoint_url": seaweed, "access_key": "rebound",
            "secret_key": "rebound-secret", "region_name": "us-east-1", "default_acl": None,
            "file_overwrite": False, "addressing_style": "path", "signature_version": "s3v4"}}}

    class Bucket:
        name = bucket
        s3 = client(seaweed)

        def keys(self):
            listed = self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])
            return [item["Key"] for item in listed]

    return Bucket()


@pytest.fixture
def running_dispatcher():
    """The dispatcher loop in a thread of the test process, stopped after the test."""
    import threading

    from django.db import connections

    from operations import dispatcher

    stop = threading.Event()

    def run():
        try:
            dispatcher.run_forever(stop=stop)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


@pytest.fixture
def timed_out_job(ai, api):
    """A finished job over us-east and asia-pacific whose asia-pacific cells timed out (408
    until the automatic budget was spent); the region answers again afterwards."""
    from executions.models import Job
    from tests.executions_helpers import create, drain

    ai.faults(region="asia-pacific", error_rate=1.0, statuses=[408])
    job_id = create(api).json()["id"]
    drain(job_id)
    ai.faults(region="asia-pacific", error_rate=0.0)
    return Job.objects.get(pk=job_id)


# --- the whole stack in real processes (browser tests, the API contract, drills) -------------

@pytest.fixture(scope="module")
def stack_storage(tmp_path_factory):
    return tmp_path_factory.mktemp("stack-uploads")


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, tmp_path_factory, stack_storage):
    """Every process of Rebound — gunicorn, a django-q2 cluster, the dispatcher, the local
    inference service — on free loopback ports over the PostgreSQL test database. One stack
    per test module: stopped with it, so its workers never pick up another module's work."""
    from tests.stack import running_stack

    with django_db_blocker.unblock():
        with running_stack(tmp_path_factory.mktemp("stack-logs"), stack_storage) as stack:
            yield stack


@pytest.fixture
def live(stack, transactional_db, settings, stack_storage):
    """The stack with a clean database and the test process storing where the servers read."""
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(stack_storage)}}}
    stack.clear_faults()
    yield stack
    stack.clear_faults()


