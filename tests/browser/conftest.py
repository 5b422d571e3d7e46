"""The real stack for browser tests: gunicorn, a django-q2 cluster, the dispatcher and the
local inference service, on free loopback ports, over the PostgreSQL test database; Chromium
from the distribution (REBOUND_CHROMIUM, or the first of chromium / chromium-browser on PATH).

Each test gets a fresh database (transactional), a signed-in user and a page that fails the
test if it logs a console error or asks anything of another host."""
import os
import shutil
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
import requests

from tests.processes import ROOT, kill_group, process_env, wait_for

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage"]


def chromium() -> str:
    path = os.environ.get("REBOUND_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not path:
        raise RuntimeError("Chromium not found: install the distribution's chromium package "
                           "or set REBOUND_CHROMIUM to its path")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def synchronous_orm_beside_playwright():
    # Playwright's sync API keeps an event loop running in this thread, which Django takes for
    # async code calling the ORM; a browser test's own database work is ordinary sync code.
    # (Processes the tests start never inherit it: tests.processes.process_env drops it.)
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": chromium(), "args": CHROMIUM_FLAGS}


@pytest.fixture(scope="session")
def stack_storage(tmp_path_factory):
    return tmp_path_factory.mktemp("stack-uploads")


@pytest.fixture(scope="session")
def stack(django_db_setup, django_db_blocker, tmp_path_factory, stack_storage):
    """Every process of Rebound, started once for the browser tests."""
    logs = tmp_path_factory.mktemp("stack-logs")
    ai_port, web_port = free_port(), free_port()
    with django_db_blocker.unblock():
        env = process_env(
            REBOUND_WORKERS=2, REBOUND_INFERENCE_URL=f"http://127.0.0.1:{ai_port}/v1",
            REBOUND_INFERENCE_KEY="test-key",
            REBOUND_INFERENCE_HEALTH_URL=f"http://127.0.0.1:{ai_port}/health",
            REBOUND_STORAGE_DIR=stack_storage, REBOUND_CHECKPOINT_SECONDS=0.3,
            REBOUND_RETRY_THROTTLE="20/min", REBOUND_UPLOAD_THROTTLE="3/min",
            REBOUND_LOG_LEVEL="WARNING")
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
                   cwd=ROOT, env=env, check=True)
    commands = {
        "inference": [sys.executable, "manage.py", "inference_service", "--port", str(ai_port)],
        "web": [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind",
                f"127.0.0.1:{web_port}", "--workers", "1", "--threads", "8"],
        "workers": [sys.executable, "manage.py", "qcluster"],
        "dispatcher": [sys.executable, "manage.py", "dispatcher"],
    }
    processes = {}
    for name, argv in commands.items():
        log = open(logs / f"{name}.log", "w")
        processes[name] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{web_port}"

    def up():
        try:
            return (requests.get(f"{base}/healthz", timeout=5).ok
                    and requests.get(f"http://127.0.0.1:{ai_port}/health", timeout=5).ok)
        except requests.RequestException:
            return False

    try:
        wait_for(up, 60, interval=0.2, what="the web server and the inference service")
    except BaseException:
        for process in processes.values():
            kill_group(process)
        raise

    class Stack:
        url = base
        ai = f"http://127.0.0.1:{ai_port}"
        log_dir = logs

        def faults(self, **spec):
            requests.post(f"{self.ai}/_faults", json=spec, timeout=5).raise_for_status()

        def clear_faults(self):
            requests.delete(f"{self.ai}/_faults", timeout=5)

    yield Stack()
    for process in processes.values():
        kill_group(process)


@pytest.fixture(scope="session")
def base_url(stack):
    return stack.url


@pytest.fixture
def live(stack, transactional_db, settings, stack_storage):
    """The stack with a clean database and the test process storing where the servers read."""
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(stack_storage)}}}
    stack.clear_faults()
    yield stack
    stack.clear_faults()


def sign_in(context, user, base: str) -> None:
    """A session for `user`, as the login form would make it."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    context.add_cookies([{"name": "sessionid", "value": session.session_key, "url": base}])


class Guard:
    """What a page did that it must not: console errors, requests to another host."""

    def __init__(self, base: str):
        self.host = urlsplit(base).netloc
        self.errors, self.foreign = [], []

    def watch(self, page):
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", self._request)

    def _request(self, request):
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != self.host:
            self.foreign.append(request.url)


@pytest.fixture
def guard(stack):
    return Guard(stack.url)


@pytest.fixture
def alice(live):
    from tests.factories import UserFactory

    return UserFactory(username="alice", email="alice@example.com")


@pytest.fixture
def page(page, alice, live, guard):
    """A page signed in as alice; the test fails if it logs an error or leaves the host."""
    sign_in(page.context, alice, live.url)
    guard.watch(page)
    yield page
    assert guard.errors == [], f"console errors: {guard.errors}"
    assert guard.foreign == [], f"requests to another host: {guard.foreign}"


@pytest.fixture
def no_js_page(browser, alice, live, guard):
    """The same, with JavaScript turned off: every page must still work as plain forms."""
    context = browser.new_context(base_url=live.url, java_script_enabled=False)
    sign_in(context, alice, live.url)
    page = context.new_page()
    guard.watch(page)
    yield page
    context.close()
    assert guard.foreign == [], f"requests to another host: {guard.foreign}"
