"""Uploads in S3-compatible object storage, against a real S3 server (SeaweedFS): stored once,
read back with ranged GETs (a ZIP is seekable; no temporary copy of the whole upload), resumed
from the checkpoint's byte offset, and a retry refused when the object is gone or changed."""
import pytest

from imports import storage as stored
from imports.models import Profile
from operations.models import Operation, Status
from tests.imports_helpers import sample_bytes, upload_file, zip_of
from tests.running import run_until_settled

pytestmark = pytest.mark.django_db


@pytest.fixture
def ranges(monkeypatch):
    """Every ranged GET made: (start, end)."""
    asked = []
    original = stored.RangedObject.readinto

    def spy(self, buffer):
        start = self.position
        n = original(self, buffer)
        asked.append((start, start + n))
        return n

    monkeypatch.setattr(stored.RangedObject, "readinto", spy)
    return asked


@pytest.fixture
def no_whole_downloads(monkeypatch):
    from storages.backends.s3 import S3File

    def refuse(self):
        raise AssertionError("the whole object was downloaded to a temporary file")

    monkeypatch.setattr(S3File, "_get_file", refuse)


def upload(api, data, name):
    response = api.post("/api/v1/imports/", {"file": upload_file(data, name)},
                        format="multipart")
    assert response.status_code == 202, response.json()
    return Profile.objects.get()


def test_an_upload_is_stored_once_in_the_bucket(api, object_storage, tmp_path):
    profile = upload(api, zip_of({"conversations.json": sample_bytes()}), "export.zip")
    assert object_storage.keys() == [profile.export_key]
    head = object_storage.s3.head_object(Bucket=object_storage.name, Key=profile.export_key)
    assert head["ContentLength"] == profile.export_size


def test_the_full_pass_reads_a_zip_with_ranged_gets(api, object_storage, ranges,
                                                    no_whole_downloads):
    profile = upload(api, zip_of({"conversations.json": sample_bytes() * 1}), "export.zip")
    run_until_settled(profile.quick_pass_operation)
    ranges.clear()
    full_pass = run_until_settled(profile.full_pass_operation)
    assert full_pass.status == Status.COMPLETED and full_pass.result["conversations"] == 43
    assert Profile.objects.get().memory_markdown.startswith("# MEMORY")
    size = Profile.objects.get().export_size
    assert ranges and all(end - start <= stored.BLOCK for start, end in ranges)
    assert ranges[0][0] > 0  # the ZIP's directory first, at the end of the object
    assert sum(end - start for start, end in ranges) < 3 * size


def test_a_retry_resumes_at_the_checkpoints_byte_offset(user, object_storage, ranges,
                                                        no_whole_downloads):
    from django.core.files import File

    from imports.passes import accept_upload
    from operations.services import retry_operation
    from tests.imports_helpers import SAMPLE

    with open(SAMPLE, "rb") as sample:
        profile = accept_upload(user, File(sample), name="c.json",
                                fault={"at": 25, "error": "permanent", "retry_numbers": [0]})
    run_until_settled(profile.quick_pass_operation)
    failed = run_until_settled(profile.full_pass_operation)
    offset = failed.checkpoint["offset"]
    assert failed.status == Status.FAILED and offset > 0
    child = retry_operation(failed.pk, by=user, channel="api")  # the preflight hashes it all
    ranges.clear()
    done = run_until_settled(child)
    assert done.status == Status.COMPLETED and done.result["resumed_by"] == "offset"
    assert ranges[0][0] == offset  # nothing before the checkpoint is read again


@pytest.mark.parametrize("change", ["deleted", "replaced", "truncated"])
def test_a_retry_of_a_changed_or_missing_object_is_input_missing(api, object_storage, change):
    from django.core.files import File

    from imports.passes import accept_upload
    from tests.imports_helpers import SAMPLE

    user = Profile._meta.get_field("user").related_model.objects.get(username="alice")
    with open(SAMPLE, "rb") as sample:
        profile = accept_upload(user, File(sample), name="c.json",
                                fault={"at": 5, "error": "permanent", "retry_numbers": [0]})
    run_until_settled(profile.quick_pass_operation)
    failed = run_until_settled(profile.full_pass_operation)
    key, data = profile.export_key, sample_bytes()
    if change == "deleted":
        object_storage.s3.delete_object(Bucket=object_storage.name, Key=key)
    elif change == "replaced":  # same size, other bytes
        object_storage.s3.put_object(Bucket=object_storage.name, Key=key,
                                     Body=data.replace(b"Django", b"Flask!"))
    else:
        object_storage.s3.put_object(Bucket=object_storage.name, Key=key, Body=data[:1000])
    response = api.post(f"/api/v1/operations/{failed.pk}/retry", format="json")
    assert response.status_code == 409 and response.json()["code"] == "input_missing"
    assert not Operation.objects.filter(parent=failed).exists()


# --- object storage that is away ---------------------------------------------------------------

@pytest.fixture
def storage_away(settings, object_storage):
    """Point the storage at a loopback port where nothing listens (connections are refused),
    as when the S3 server is down; `back()` points it at the real server again."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    up = settings.STORAGES

    def away():
        default = {**up["default"], "OPTIONS": {**up["default"]["OPTIONS"],
                                                "endpoint_url": closed}}
        settings.STORAGES = {**up, "default": default}

    def back():
        settings.STORAGES = up

    away.back = back
    return away


def test_a_full_pass_waits_while_storage_is_away_and_resumes_when_it_is_back(
        api, web, object_storage, storage_away):
    from datetime import timedelta

    from django.utils import timezone

    from operations import dispatcher, gates, runner
    from operations.models import Gate
    from tests.running import make_due

    profile = upload(api, zip_of({"conversations.json": sample_bytes()}), "export.zip")
    run_until_settled(profile.quick_pass_operation)
    full_pass = profile.full_pass_operation
    assert full_pass.dependency == "storage"
    storage_away()
    outcomes = []
    for _ in range(5):  # five refused connections in a row: the storage looks down
        gates.forget()
        make_due(full_pass)
        dispatcher.release_due()
        outcomes.append(runner.run(full_pass.pk))
    assert outcomes[:4] == ["retry_scheduled"] * 4
    assert outcomes[-1] == "waiting" and Gate.objects.get(key="storage").state == "open"
    full_pass.refresh_from_db()
    assert full_pass.status == Status.WAITING and full_pass.error_code == "storage_unavailable"
    assert "the file storage is not answering" in full_pass.waiting_message
    banner = web.get("/").content.decode()
    assert "Waiting: the file storage is not answering" in banner and "banner-failed" not in banner
    full = api.get("/api/v1/imports/profile").json()["full_pass"]
    assert full["status"] == "waiting" and full["operation"]["waiting"]["dependency"] == "storage"
    storage_away.back()
    Gate.objects.filter(key="storage").update(open_until=timezone.now() - timedelta(seconds=1))
    assert gates.tick()["probes"] == 1
    done = run_until_settled(full_pass)
    assert done.status == Status.COMPLETED
    assert Gate.objects.get(key="storage").state == "closed"


def test_a_manual_retry_while_storage_is_away_is_accepted_and_waits(api, object_storage,
                                                                    storage_away):
    profile = upload(api, zip_of({"conversations.json": sample_bytes()}), "export.zip")
    failed = Operation.objects.get(pk=profile.full_pass_operation.pk)
    Operation.objects.filter(pk=failed.pk).update(status=Status.FAILED)
    storage_away()
    response = api.post("/api/v1/imports/full-pass/retry", {}, format="json")
    assert response.status_code == 202  # not a 500, not input_missing: the file may be fine
