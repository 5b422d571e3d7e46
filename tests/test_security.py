"""Sign-ins that cannot be guessed (a lockout with a cool-off per account and client address,
lifted by staff) and a strict Content-Security-Policy on every page."""
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "pw-secret-123"  # the factories' password
HOME = "198.51.100.7"
ELSEWHERE = "203.0.113.9"


def sign_in(client, username, password, url="/accounts/login/", address=HOME):
    return client.post(url, {"username": username, "password": password},
                       REMOTE_ADDR=address)


@pytest.fixture
def limit(settings):
    settings.AXES_FAILURE_LIMIT = 5
    return 5


def test_thirty_wrong_passwords_then_the_right_one_is_refused_with_a_reason(client, user, limit):
    answers = [sign_in(client, "alice", f"guess-{n}").status_code for n in range(30)]
    assert answers[:limit - 1] == [200] * (limit - 1)  # the form again, with its error
    assert set(answers[limit - 1:]) == {429}
    right = sign_in(client, "alice", PASSWORD)
    assert right.status_code == 429
    text = right.content.decode()
    assert "Sign-in paused" in text and "15 minutes" in text and "administrator" in text
    assert "_auth_user_id" not in client.session


def test_the_admin_login_is_limited_the_same_way(client, limit):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    for n in range(limit):
        sign_in(client, "root", f"guess-{n}", url="/admin/login/")
    assert sign_in(client, "root", PASSWORD, url="/admin/login/").status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_lockout_holds_only_that_account_from_that_address(client, user, other_user, limit):
    for n in range(limit):
        sign_in(client, "alice", f"guess-{n}")
    # Nobody can lock alice out from everywhere: she signs in from another address...
    elsewhere = Client()
    assert sign_in(elsewhere, "alice", PASSWORD, address=ELSEWHERE).status_code == 302
    # ...and another account signs in from the same address.
    assert sign_in(Client(), "mallory", PASSWORD).status_code == 302


def test_the_pause_ends_after_the_cool_off_and_failures_during_it_do_not_extend_it(
        client, user, limit):
    for n in range(limit + 10):
        sign_in(client, "alice", f"guess-{n}")
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert sign_in(client, "alice", PASSWORD).status_code == 302


def test_a_right_password_before_the_limit_starts_the_count_again(client, user, limit):
    for n in range(limit - 1):
        sign_in(client, "alice", f"guess-{n}")
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    client.logout()
    for n in range(limit - 1):
        sign_in(client, "alice", f"guess-{n}")
    assert sign_in(client, "alice", PASSWORD).status_code == 302


def test_staff_lift_a_pause_in_the_admin(client, user, limit):
    for n in range(limit):
        sign_in(client, "alice", f"guess-{n}")
    staff = Client()
    staff.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    attempt = AccessAttempt.objects.get(username="alice")
    listing = staff.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "alice" in listing.content.decode()
    staff.post("/admin/axes/accessattempt/", {
        "action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"})
    assert not AccessAttempt.objects.exists()
    assert sign_in(client, "alice", PASSWORD).status_code == 302


def test_guessing_api_tokens_is_paused_with_a_locked_out_problem(user, limit):
    real = Token.objects.create(user=user).key
    guesser = APIClient(REMOTE_ADDR=HOME)
    codes = []
    for n in range(limit + 2):
        guesser.credentials(HTTP_AUTHORIZATION=f"Token {n:040x}")
        codes.append(guesser.get("/api/v1/operations/").status_code)
    assert codes[:limit - 1] == [401] * (limit - 1) and set(codes[limit:]) == {429}
    # Even the right token is refused from that address while the pause lasts: a lucky guess
    # would otherwise get through.
    guesser.credentials(HTTP_AUTHORIZATION=f"Token {real}")
    paused = guesser.get("/api/v1/operations/")
    assert paused.status_code == 429 and paused["Content-Type"] == "application/problem+json"
    body = paused.json()
    assert body["code"] == "locked_out" and "Try again in 15 minutes" in body["detail"]
    assert int(paused["Retry-After"]) == 900
    # The owner of that token, calling from their own address, is not affected.
    owner = APIClient(REMOTE_ADDR=ELSEWHERE)
    owner.credentials(HTTP_AUTHORIZATION=f"Token {real}")
    assert owner.get("/api/v1/operations/").status_code == 200


def test_a_call_without_a_token_is_not_counted_as_a_guess(user, limit):
    anonymous = APIClient(REMOTE_ADDR=HOME)
    assert {anonymous.get("/api/v1/operations/").status_code for _ in range(limit + 2)} == {401}
    assert not AccessAttempt.objects.exists()


# --- Content-Security-Policy -------------------------------------------------------------------

PAGES = ["/", "/jobs/", "/batches/", "/interviews/", "/operations/", "/notifications/",
         "/api/v1/docs/", "/admin/", "/accounts/login/"]


@pytest.mark.parametrize("url", PAGES)
def test_every_page_is_served_with_a_strict_content_security_policy(client, user, url):
    staff = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(staff if url == "/admin/" else user)
    if url == "/accounts/login/":
        client.logout()
    response = client.get(url)
    assert response.status_code == 200
    policy = dict(part.strip().split(" ", 1) for part in
                  response["Content-Security-Policy"].split(";") if part.strip())
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert "unsafe" not in response["Content-Security-Policy"]
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"


@pytest.mark.parametrize("url", [u for u in PAGES if u not in ("/admin/", "/api/v1/docs/")])
def test_our_pages_carry_no_inline_script_or_style(client, user, url):
    client.force_login(user)
    if url == "/accounts/login/":
        client.logout()
    html = client.get(url).content.decode()
    scripts = html.split("<script")[1:]
    assert all(" src=" in script.split(">", 1)[0] for script in scripts)
    assert " style=" not in html and "<style" not in html
