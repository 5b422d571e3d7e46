"""Browser tests on the real stack (the `stack` and `live` fixtures of tests/conftest.py),
with Chromium from the distribution (REBOUND_CHROMIUM, or the first of chromium /
chromium-browser on PATH).

Each test gets a fresh database (transactional), a signed-in user and a page that fails the
test if it logs a console error or asks anything of another host."""
import os
import shutil
from urllib.parse import urlsplit

import pytest

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


@pytest.fixture(scope="module")
def browser_context_args(stack):
    """Each test module has its own stack, so its own address."""
    return {"base_url": stack.url}


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
