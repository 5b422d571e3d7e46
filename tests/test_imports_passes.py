"""The quick pass and the resumable full pass, on the real export and on synthetic ones."""
import io
import json
from datetime import datetime, timezone

import pytest
from django.core.files import File

from imports.models import MemoryFact, Profile
from imports.passes import accept_upload
from operations.models import Operation, Status
from tests.imports_helpers import sample_bytes, synthetic
from tests.running import run_until_settled

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def storage(export_storage, settings):
    # A checkpoint after every conversation: a failure at k always has one just before it.
    settings.IMPORTS = {**settings.IMPORTS, "CHECKPOINT_SECONDS": 0}
    return export_storage


def upload(user, data, fault=None) -> Profile:
    return accept_upload(user, File(io.BytesIO(data), name="export.json"), fault=fault)


def run_passes(profile):
    run_until_settled(profile.quick_pass_operation)
    return run_until_settled(profile.full_pass_operation)


def fact_keys(profile):
    return sorted(MemoryFact.objects.filter(profile=profile).values_list(
        "conversation_id", "fingerprint"))


def test_the_real_export_imports_end_to_end(user):
    profile = upload(user, sample_bytes())
    full_pass = run_passes(profile)
    profile.refresh_from_db()
    raw = json.loads(sample_bytes())
    assert full_pass.status == Status.COMPLETED and profile.full_pass_status == "complete"
    assert profile.conversation_count == len(raw) == 43
    assert profile.message_count == sum(1 for c in raw for n in c["mapping"].values()
                                        if n.get("message"))
    assert profile.first_conversation_at == datetime.fromtimestamp(
        min(c["create_time"] for c in raw), tz=timezone.utc)
    assert profile.titles[0] == raw[0]["title"]
    assert full_pass.result["conversations"] == 43 and full_pass.progress_done == 43
    assert "## Skills and tools" in profile.memory_markdown and "django" in profile.memory_markdown
    assert "a django application with multiple databases" in profile.memory_markdown


def test_facts_name_their_source_conversation(user):
    profile = upload(user, sample_bytes())
    run_passes(profile)
    fact = MemoryFact.objects.get(profile=profile, category="project",
                                  text="a django application with multiple databases")
    assert fact.conversation_title == "Django Multi-DB Setup"


def test_a_transient_failure_at_k_resumes_at_k_and_writes_each_fact_once(user, other_user):
    data = synthetic(80)
    clean = upload(other_user, data)
    run_passes(clean)
    profile = upload(user, data, fault={"at": 50, "error": "transient", "attempts": [1]})
    full_pass = run_passes(profile)
    first, second = full_pass.attempts.all()
    assert first.outcome == "transient" and second.outcome == "succeeded"
    assert full_pass.result["resumed_from"] == 50
    assert fact_keys(profile) == fact_keys(clean)
    assert Profile.objects.get(pk=profile.pk).memory_markdown == \
        Profile.objects.get(pk=clean.pk).memory_markdown


def test_a_permanent_failure_at_k_is_retried_by_hand_and_resumes_at_k(user, api, other_user):
    data = synthetic(80)
    clean = upload(other_user, data)
    run_passes(clean)
    profile = upload(user, data, fault={"at": 60, "error": "permanent", "retry_numbers": [0]})
    failed = run_passes(profile)
    assert failed.status == Status.FAILED and failed.checkpoint["index"] == 60
    assert Profile.objects.get(pk=profile.pk).full_pass_status == "failed"
    response = api.post("/api/v1/imports/full-pass/retry", {"reason": "resume"}, format="json")
    assert response.status_code == 202
    child = Operation.objects.get(pk=response.json()["id"])
    assert child.parent == failed and child.checkpoint["index"] == 60
    run_until_settled(child)
    child.refresh_from_db()
    assert child.status == Status.COMPLETED and child.result["resumed_from"] == 60
    assert child.result["resumed_by"] == "offset"  # the first 60 were not parsed again
    assert fact_keys(profile) == fact_keys(clean)
    assert Profile.objects.get(pk=profile.pk).full_pass_status == "complete"


def test_retry_when_the_full_pass_has_not_failed_is_409(user, api):
    upload(user, sample_bytes())
    response = api.post("/api/v1/imports/full-pass/retry", format="json")
    assert response.status_code == 409 and response.json()["code"] == "not_failed"


def failed_full_pass(user):
    profile = upload(user, sample_bytes(), fault={"at": 5, "error": "permanent"})
    run_passes(profile)
    return Profile.objects.get(pk=profile.pk)


def test_retry_with_the_stored_file_gone_is_409_input_missing(user, api, storage):
    profile = failed_full_pass(user)
    (storage / profile.export_key).unlink()
    response = api.post("/api/v1/imports/full-pass/retry", format="json")
    assert response.status_code == 409 and response.json()["code"] == "input_missing"
    assert not Operation.objects.filter(parent=profile.full_pass_operation).exists()


def test_retry_with_the_stored_file_changed_is_409_input_missing(user, api, storage):
    profile = failed_full_pass(user)
    (storage / profile.export_key).write_bytes(b"[]")
    response = api.post("/api/v1/imports/full-pass/retry", format="json")
    assert response.status_code == 409 and response.json()["code"] == "input_missing"


def test_a_damaged_file_found_mid_pass_is_a_permanent_explained_failure(user, storage):
    profile = upload(user, sample_bytes())
    run_until_settled(profile.quick_pass_operation)
    data = sample_bytes()
    (storage / profile.export_key).write_bytes(data[: len(data) // 2])
    full_pass = run_until_settled(profile.full_pass_operation)
    assert full_pass.status == Status.FAILED and full_pass.error_code == "export_damaged"
    assert full_pass.attempts.count() == 1 and full_pass.checkpoint["index"] > 0
    assert "damaged part-way" in full_pass.error_message and "/" not in full_pass.error_message


def test_oversized_conversations_are_skipped_and_reported(user, settings, web):
    settings.IMPORTS = {**settings.IMPORTS, "MAX_CONVERSATION_BYTES": 30_000}
    profile = upload(user, sample_bytes())
    full_pass = run_passes(profile)
    assert full_pass.status == Status.COMPLETED
    assert 0 < len(full_pass.result["skipped"]) < 43
    assert all(entry["bytes"] > 30_000 for entry in full_pass.result["skipped"])
    assert "too large to read" in web.get("/").content.decode()


def test_admin_action_retries_a_failed_full_pass(user, client):
    from tests.factories import UserFactory

    profile = failed_full_pass(user)
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    response = client.post("/admin/imports/profile/", {
        "action": "retry_failed_full_pass", "_selected_action": [profile.pk]}, follow=True)
    assert "Retried 1; skipped 0." in response.content.decode()
    assert Operation.objects.get(parent=profile.full_pass_operation).channel == "admin"


def test_a_checkpoint_offset_that_does_not_fit_the_file_falls_back_to_counting(user, other_user):
    data = synthetic(40)
    clean = upload(other_user, data)
    run_passes(clean)
    profile = upload(user, data, fault={"at": 30, "error": "permanent"})
    failed = run_passes(profile)
    Operation.objects.filter(pk=failed.pk).update(checkpoint={**failed.checkpoint, "offset": 777})
    from operations.services import retry_operation

    child = retry_operation(failed.pk, by=user, channel="api")
    run_until_settled(child)
    child.refresh_from_db()
    assert child.status == Status.COMPLETED and child.result["resumed_by"] == "count"
    assert fact_keys(profile) == fact_keys(clean)


def test_a_zip_export_resumes_at_its_offset_too(user, other_user):
    from tests.imports_helpers import zip_of

    data = zip_of({"export/conversations.json": synthetic(50)})
    clean = upload(other_user, data)
    run_passes(clean)
    profile = upload(user, data, fault={"at": 35, "error": "transient", "attempts": [1]})
    full_pass = run_passes(profile)
    assert full_pass.result["resumed_by"] == "offset" and full_pass.result["resumed_from"] == 35
    assert fact_keys(profile) == fact_keys(clean)


def test_a_claude_export_imports_end_to_end(user):
    claude = [{"uuid": f"k{i}", "name": f"Trip {i}", "created_at": f"2024-05-0{i + 1}T10:00:00Z",
               "chat_messages": [{"sender": "human", "text": "I live in Osaka. I use python."},
                                 {"sender": "assistant", "text": "Lovely."}]} for i in range(3)]
    profile = upload(user, json.dumps(claude).encode())
    full_pass = run_passes(profile)
    profile.refresh_from_db()
    assert profile.export_source == "claude" and profile.conversation_count == 3
    assert profile.message_count == 6 and full_pass.status == Status.COMPLETED
    assert "- Osaka (from “Trip 0”)" in profile.memory_markdown
    assert "python (3 conversations)" in profile.memory_markdown
