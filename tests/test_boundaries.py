"""What every URL owes a stranger and a careless client: another user's object is the same
404 as an unknown id (API and pages), every form refuses a POST without its CSRF token, and
malformed ids, bodies and uploads never show a traceback, a path or a server error."""
import re
import uuid

import pytest
from django.test import Client
from rest_framework.test import APIClient

from batches.models import Batch
from batches.pipeline import request_pipeline
from batches.services import create_batch
from executions.services import create_job
from interviews.services import start_session
from operations.models import Notification
from tests.batches_helpers import essay
from tests.factories import OperationFactory, UserFactory

pytestmark = pytest.mark.django_db
UNKNOWN = {"op": uuid.UUID(int=1), "int": 987654321}


@pytest.fixture
def owned(user):
    """One of each object alice owns."""
    failed = OperationFactory(owner=user, failed=True)
    session = start_session(user, "Queues")
    job = create_job(user, title="t", model="m", regions=["us-east"], questions=["Q?"])
    batch = create_batch(user, title="b", essays=[essay(0)])
    request_pipeline(batch, "spellcheck")
    Notification.objects.create(owner=user, operation=failed, kind=failed.kind, event="failed",
                                message="x")
    return {"op": failed.pk, "session": session.pk, "turn": session.turns.get().pk,
            "job": job.pk, "cell": job.executions.get().pk, "batch": batch.pk,
            "essay": batch.essays.get().pk, "notification": Notification.objects.get().pk}


# (method, url template); {name} is replaced by alice's object or an unknown id.
API = [
    ("get", "/api/v1/operations/{op}/"), ("post", "/api/v1/operations/{op}/retry"),
    ("post", "/api/v1/operations/{op}/cancel"), ("get", "/api/v1/jobs/{job}/"),
    ("get", "/api/v1/jobs/{job}/executions/all"), ("post", "/api/v1/jobs/{job}/retry-failed"),
    ("get", "/api/v1/executions/{cell}/details"),
    ("post", "/api/v1/executions/{cell}/retry-question"), ("get", "/api/v1/batches/{batch}/"),
    ("post", "/api/v1/batches/{batch}/pipeline"), ("post", "/api/v1/batches/{batch}/retry-phase"),
]
PAGES = [
    ("get", "/operations/{op}/"), ("post", "/operations/{op}/retry"),
    ("get", "/interviews/{session}/"), ("post", "/interviews/{session}/next"),
    ("get", "/interviews/{session}/turns/{turn}/"),
    ("post", "/interviews/{session}/turns/{turn}/answer"),
    ("post", "/interviews/{session}/turns/{turn}/retry/{op}"),
    ("get", "/jobs/{job}/"), ("get", "/jobs/{job}/cells"), ("get", "/jobs/{job}/retry-failed"),
    ("post", "/jobs/{job}/retry-failed"), ("post", "/jobs/{job}/cells/{cell}/retry"),
    ("get", "/jobs/{job}/cells/{cell}/history"), ("get", "/batches/{batch}/"),
    ("post", "/batches/{batch}/run"), ("post", "/batches/{batch}/phases/nlp/retry"),
    ("get", "/batches/{batch}/phases/nlp/essays/{essay}/history"),
    ("get", "/batches/{batch}/phases/cj_assessment/history"),
    ("post", "/notifications/{notification}/read"),
]
TOKENS = re.compile(r'(csrfmiddlewaretoken" value="|X-CSRFToken": ")[^"]+')


def fill(template, ids):
    return template.format(**{name: ids.get(name, UNKNOWN["op"] if name == "op"
                                         else UNKNOWN["int"]) for name in
                              re.findall(r"{(\w+)}", template)})


def body(response) -> str:
    return TOKENS.sub(r"\1", response.content.decode())


@pytest.mark.parametrize("method, template", API)
def test_someone_elses_api_object_is_the_same_404_as_an_unknown_one(owned, method, template):
    mallory = APIClient()
    mallory.force_authenticate(UserFactory(username="mallory"))
    payload = {"region": "us-east", "question_index": 0, "phase": "nlp",
               "requested_pipeline": "nlp"} if method == "post" else None
    theirs = getattr(mallory, method)(fill(template, owned), payload, format="json")
    unknown = getattr(mallory, method)(fill(template, {}), payload, format="json")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.content == unknown.content


@pytest.mark.parametrize("method, template", PAGES)
def test_someone_elses_page_is_the_same_404_as_an_unknown_one(owned, client, method,
                                                              template):
    client.force_login(UserFactory(username="mallory"))
    theirs = getattr(client, method)(fill(template, owned))
    unknown = getattr(client, method)(fill(template, {}))
    assert theirs.status_code == unknown.status_code == 404
    assert body(theirs) == body(unknown)


FORMS = ["/imports/upload", "/imports/full-pass/retry", "/imports/full-pass/dismiss",
         "/operations/{op}/retry", "/interviews/", "/interviews/{session}/next",
         "/interviews/{session}/turns/{turn}/answer",
         "/interviews/{session}/turns/{turn}/retry/{op}", "/jobs/new", "/jobs/{job}/retry-failed",
         "/jobs/{job}/cells/{cell}/retry", "/batches/new", "/batches/{batch}/run",
         "/batches/{batch}/phases/nlp/retry", "/notifications/{notification}/read",
         "/notifications/read-all", "/accounts/logout/"]


@pytest.mark.parametrize("template", FORMS)
def test_every_form_refuses_a_post_without_its_csrf_token(owned, user, template):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.post(fill(template, owned), {"reason": "x"})
    assert response.status_code == 403


def test_the_sign_in_form_refuses_a_post_without_its_csrf_token(user):
    response = Client(enforce_csrf_checks=True).post("/accounts/login/", {
        "username": "alice", "password": "pw-secret-123"})
    assert response.status_code == 403


def test_the_api_refuses_a_session_post_without_csrf_but_not_a_token_one(owned, user, api):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.post(f"/api/v1/operations/{owned['op']}/retry", {}, format="json"
                        ).status_code == 403
    assert api.post(f"/api/v1/operations/{owned['op']}/retry", {}, format="json"
                    ).status_code == 202


MALFORMED_IDS = ["abc", "0", "-1", "99999999999999999999999", "1.5", "%00", "..%2F..%2Fetc",
                 "'; DROP TABLE", "<script>"]


@pytest.mark.parametrize("raw", MALFORMED_IDS)
def test_malformed_ids_are_404s_without_a_traceback(web, api, raw):
    for client, path in ((api, f"/api/v1/operations/{raw}/"), (api, f"/api/v1/jobs/{raw}/"),
                         (api, f"/api/v1/batches/{raw}/"),
                         (api, f"/api/v1/executions/{raw}/details"),
                         (web, f"/operations/{raw}/"), (web, f"/jobs/{raw}/"),
                         (web, f"/batches/{raw}/")):
        response = client.get(path)
        assert response.status_code in (400, 404), path
        assert_no_leak(response)


@pytest.mark.parametrize("payload", ["{", "[]", "null", '{"reason": 5}', '"text"',
                                     '{"reason": "' + "x" * 600 + '"}', "\x00\xff"])
def test_malformed_api_bodies_are_typed_400s(api, owned, payload):
    for path in (f"/api/v1/operations/{owned['op']}/retry", "/api/v1/jobs/",
                 f"/api/v1/batches/{owned['batch']}/retry-phase", "/api/v1/batches/"):
        response = api.generic("POST", path, payload, content_type="application/json")
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response["Content-Type"] == "application/problem+json"
        assert "code" in response.json()
        assert_no_leak(response)


@pytest.mark.parametrize("upload", [b"", b"\x00" * 10, b"PK\x03\x04garbage", b"{" * 1000,
                                    "😀".encode() * 100])
def test_malformed_uploads_are_explained_not_tracebacks(api, web, upload, export_storage):
    from tests.imports_helpers import upload_file

    response = api.post("/api/v1/imports/", {"file": upload_file(upload)}, format="multipart")
    assert response.status_code == 400 and response.json()["code"]
    assert_no_leak(response)
    page = web.post("/imports/upload", {"file": upload_file(upload)})
    assert page.status_code == 200 and 'role="alert"' in page.content.decode()
    assert_no_leak(page)
    assert not Batch.objects.exists()


def assert_no_leak(response):
    text = response.content.decode(errors="replace")
    for leak in ("Traceback", "File \"/", "/work/", "site-packages", "SECRET"):
        assert leak not in text, leak
