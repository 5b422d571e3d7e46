"""Uploading an export: accepted once validated; every refusal has a code, a message a person
can act on, and leaves no file and no row behind."""
import pytest

from imports.models import Profile
from operations.models import Operation
from tests.imports_helpers import sample_bytes, upload_file, zip_of

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def storage(export_storage):
    return export_storage


def stored(storage):
    return sorted(p.name for p in storage.rglob("*") if p.is_file())


def post(api, data, name="conversations.json"):
    return api.post("/api/v1/imports/", {"file": upload_file(data, name)}, format="multipart")


def test_the_real_export_is_accepted_stored_once_and_both_passes_queued(api, user, storage):
    response = post(api, sample_bytes())
    assert response.status_code == 202
    profile = Profile.objects.get(user=user)
    assert len(stored(storage)) == 1 and not stored(storage)[0].endswith(".json")
    assert profile.export_sha256 == "6fc43a72c9903216052b8608ad2aafdc8a131db3e21f81ceeb918eefeda59c64"
    assert {o.kind for o in Operation.objects.filter(owner=user)} == {
        "imports.quick_pass", "imports.full_pass"}
    assert "storage_key" in profile.full_pass_operation.input
    assert response.json()["full_pass"]["status"] == "pending"


def test_an_export_zip_is_accepted(api, user):
    response = post(api, zip_of({"Export/conversations.json": sample_bytes(),
                                 "Export/chat.html": b"<html></html>"}), "export.zip")
    assert response.status_code == 202
    assert Profile.objects.get(user=user).export_type == "zip"


TINY_BOMB = zip_of({"conversations.json": b"[" + b" " * (30 * 1024 * 1024) + b"]"})
REFUSALS = {
    "unsupported_file": (b"hello, this is a text file", "notes.txt"),
    "empty_file": (b"", "conversations.json"),
    "damaged_zip": (zip_of({"conversations.json": sample_bytes()})[:5000], "export.zip"),
    "no_conversations": (zip_of({"chat.html": b"<html></html>"}), "export.zip"),
    "several_conversations": (zip_of({"a/conversations.json": b"[]",
                                      "b/conversations.json": b"[]"}), "export.zip"),
    "zip_bomb": (TINY_BOMB, "export.zip"),
    "unsafe_zip": (zip_of({"../evil.json": b"x", "conversations.json": b"[]"}), "e.zip"),
    "encrypted_zip": (zip_of({"conversations.json": b"[]"}, encrypted=True), "e.zip"),
    "malformed_json": (b'[{"title": "x", "mapping": {', "conversations.json"),
    "empty_export": (b"[]", "conversations.json"),
    "not_an_export": (b'{"conversations": []}', "conversations.json"),
}


@pytest.mark.parametrize("code", REFUSALS)
def test_bad_uploads_are_refused_with_a_code_and_nothing_kept(api, user, storage, code):
    data, name = REFUSALS[code]
    response = post(api, data, name)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code and len(body["detail"]) > 20
    assert "/" not in body["detail"].replace("and/or", "")  # no paths
    assert stored(storage) == [] and not Profile.objects.exists()
    assert not Operation.objects.exists()


@pytest.mark.parametrize("members,symlinks", [
    ({"/etc/conversations.json": b"[]"}, ()),
    ({"a/../../conversations.json": b"[]"}, ()),
    ({"conversations.json": b"/etc/passwd"}, ("conversations.json",)),
])
def test_zip_slip_names_and_symlinks_are_refused(api, storage, members, symlinks):
    response = post(api, zip_of(members, symlinks=symlinks), "e.zip")
    assert response.status_code == 400 and response.json()["code"] == "unsafe_zip"
    assert stored(storage) == []


def test_too_many_members_is_a_zip_bomb(api, settings, storage):
    settings.IMPORTS = {**settings.IMPORTS, "MAX_MEMBERS": 5}
    members = {f"f{i}.txt": b"x" for i in range(6)} | {"conversations.json": b"[]"}
    assert post(api, zip_of(members), "e.zip").json()["code"] == "zip_bomb"


def test_a_nested_archive_is_refused(api, storage):
    data = zip_of({"conversations.json": b"[]", "more.zip": zip_of({"x": b"y"})})
    assert post(api, data, "e.zip").json()["code"] == "zip_bomb"


def test_an_upload_over_the_size_cap_is_413_and_nothing_kept(api, settings, storage):
    settings.IMPORTS = {**settings.IMPORTS, "MAX_UPLOAD_BYTES": 100_000}
    response = post(api, sample_bytes())
    assert response.status_code == 413 and response.json()["code"] == "file_too_large"
    assert stored(storage) == [] and not Profile.objects.exists()


def test_a_refused_upload_keeps_the_previous_export(api, user, storage):
    post(api, sample_bytes())
    before = Profile.objects.get(user=user)
    assert post(api, b"[]").status_code == 400
    after = Profile.objects.get(user=user)
    assert after.export_key == before.export_key and stored(storage) == [before.export_key.split("/")[-1]]


def test_a_new_upload_replaces_the_old_file(api, user, storage, django_capture_on_commit_callbacks):
    post(api, sample_bytes())
    old_key = Profile.objects.get(user=user).export_key
    with django_capture_on_commit_callbacks(execute=True):
        assert post(api, zip_of({"conversations.json": sample_bytes()}), "e.zip").status_code == 202
    new_key = Profile.objects.get(user=user).export_key
    assert new_key != old_key and stored(storage) == [new_key.split("/")[-1]]


def test_the_upload_page_shows_the_refusal(web, storage):
    response = web.post("/imports/upload", {"file": upload_file(b"[]")})
    assert response.status_code == 200  # the form again, with the reason next to it
    assert 'role="alert"' in response.content.decode()
    assert "no conversations in it" in response.content.decode()


def test_the_imports_list_shows_the_users_export_and_its_passes(api, user, storage):
    assert api.get("/api/v1/imports/").json() == []
    api.post("/api/v1/imports/", {"file": upload_file(sample_bytes())}, format="multipart")
    [listed] = api.get("/api/v1/imports/").json()
    assert listed["name"] == "conversations.json" and listed["type"] == "json"
    assert listed["full_pass_status"] == "pending" and listed["size"] == len(sample_bytes())
