"""A real worker is SIGKILLed in the middle of a full pass; the retry resumes from the
checkpoint and every conversation's facts are written once."""
import io
import os
import signal

import pytest
from django.core.files import File

from imports.models import MemoryFact, Profile
from imports.passes import accept_upload
from operations.models import Operation, Outcome, Status, Trigger
from tests.imports_helpers import synthetic
from tests.processes import cluster, wait_for
from tests.running import run_until_settled

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def storage(export_storage):
    return export_storage


def test_killed_worker_mid_pass_resumes_from_its_checkpoint(user, other_user, tmp_path, storage,
                                                            settings, running_dispatcher):
    data = synthetic(3000, turn_bytes=60)
    clean = accept_upload(other_user, File(io.BytesIO(data), name="e.json"))
    run_until_settled(clean.quick_pass_operation)
    run_until_settled(clean.full_pass_operation)
    expected = sorted(MemoryFact.objects.filter(profile=clean).values_list(
        "conversation_id", "fingerprint"))

    profile = accept_upload(user, File(io.BytesIO(data), name="e.json"))
    operation = Operation.objects.get(pk=profile.full_pass_operation_id)
    with cluster(tmp_path, REBOUND_VAR_DIR=tmp_path, REBOUND_CHECKPOINT_SECONDS="0.2",
                 REBOUND_STORAGE_DIR=storage):
        checkpointed = wait_for(
            lambda: Operation.objects.filter(pk=operation.pk, status=Status.PROCESSING,
                                             progress_done__gte=300).first(),
            60, what="a checkpoint part-way")
        os.kill(int(checkpointed.lease_holder.split(":")[1]), signal.SIGKILL)
        wait_for(lambda: Operation.objects.filter(pk=operation.pk, status=Status.COMPLETED)
                 .exists(), 120, what="completion after recovery")
    operation.refresh_from_db()
    first, second = operation.attempts.all()
    assert first.outcome == Outcome.CRASHED
    assert second.trigger == Trigger.RECOVERED and second.outcome == Outcome.SUCCEEDED
    assert 300 <= operation.result["resumed_from"] < 3000
    assert sorted(MemoryFact.objects.filter(profile=profile).values_list(
        "conversation_id", "fingerprint")) == expected
    assert Profile.objects.get(pk=profile.pk).memory_markdown == \
        Profile.objects.get(pk=clean.pk).memory_markdown
