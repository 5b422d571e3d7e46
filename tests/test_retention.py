"""Retention: history finished before REBOUND_KEEP_DAYS is pruned per workload (a job, batch
or interview session whole; an import profile keeps its latest passes; a retry chain with a
recent retry stays whole), nothing a page needs is gone, every page and API answer still
works, and the figures read the same before and after."""
import io
from datetime import timedelta

import pytest
from django.core.files import File
from django.core.management import call_command

from batches.models import Batch, Essay, PhaseOutput
from batches.pipeline import request_pipeline
from batches.services import create_batch
from executions.models import Execution, Job
from executions.services import create_job, start_waiting_cells
from imports.passes import accept_upload
from interviews.models import InterviewSession, InterviewTurn
from interviews.services import start_session
from operations import retention, rollups
from operations.models import Attempt, Grain, Notification, Operation, Status
from operations.services import retry_operation
from tests import batches_helpers, executions_helpers
from tests.factories import OperationFactory
from tests.imports_helpers import sample_bytes
from tests.running import run_until_settled

pytestmark = pytest.mark.django_db
OLD = timedelta(days=40)


def age(*querysets_and_fields):
    """Move rows back in time by OLD (as if they had happened 40 days ago)."""
    for queryset, fields in querysets_and_fields:
        for row in queryset.values("pk", *fields):
            queryset.model.objects.filter(pk=row["pk"]).update(
                **{f: row[f] - OLD for f in fields if row[f] is not None})


def age_everything():
    age((Operation.objects.all(), ["created_at", "finished_at", "started_at", "enqueued_at"]),
        (Attempt.objects.all(), ["started_at", "finished_at"]),
        (Job.objects.all(), ["created_at"]), (Batch.objects.all(), ["created_at"]),
        (InterviewSession.objects.all(), ["created_at"]))


def figures():
    return {grain: rollups.read(grain, by_key=True) for grain in Grain.values}


def a_job(user, title):
    job = create_job(user, title=title, model="m-1", regions=["us-east"],
                     questions=["What is a lease?"])
    start_waiting_cells(job.pk)
    executions_helpers.drain(job.pk)
    return job


def a_batch(user, title):
    batch = create_batch(user, title=title, essays=[batches_helpers.essay(i) for i in range(2)])
    request_pipeline(batch, "cj_assessment")
    batches_helpers.drain(batch.pk)
    return batch


def a_session(user, topic):
    session = start_session(user, topic)
    run_until_settled(session.turns.get().question_operation)
    return session


@pytest.fixture
def history(ai, user, export_storage, settings):
    """Old work of every workload (40 days ago), then recent work of every workload."""
    settings.IMPORTS = {**settings.IMPORTS, "CHECKPOINT_SECONDS": 0}
    profile = accept_upload(user, File(io.BytesIO(sample_bytes()), name="export.json"))
    for operation in (profile.quick_pass_operation, profile.full_pass_operation):
        run_until_settled(operation)
    old = {"job": a_job(user, "Old job"), "batch": a_batch(user, "Old batch"),
           "session": a_session(user, "Old topic"),
           "passes": [profile.quick_pass_operation_id, profile.full_pass_operation_id],
           "lone": OperationFactory(owner=user, failed=True)}
    # A chain whose retry is recent stays whole; one whose retry is old too goes.
    kept_chain = OperationFactory(owner=user, failed=True)
    gone_chain = OperationFactory(owner=user, failed=True)
    gone_retry = retry_operation(gone_chain.pk, by=user, channel="web")
    run_until_settled(gone_retry)
    age_everything()
    old.update(kept_chain=kept_chain, gone_chain=gone_chain, gone_retry=gone_retry)
    kept_retry = retry_operation(kept_chain.pk, by=user, channel="web")
    run_until_settled(kept_retry)
    recent = {"job": a_job(user, "New job"), "batch": a_batch(user, "New batch"),
              "session": a_session(user, "New topic"), "kept_retry": kept_retry}
    rollups.fold_all()
    return old, recent


def test_each_workload_keeps_what_its_pages_need_and_the_rest_goes(history):
    old, recent = history
    before = figures()
    deleted = retention.prune()
    assert deleted["jobs"] == 1 and deleted["batches"] == 1 and deleted["interview sessions"] == 1
    # Whole: the old job, batch and session with their children and operations.
    assert not Job.objects.filter(pk=old["job"].pk).exists()
    assert not Execution.objects.filter(job_id=old["job"].pk).exists()
    assert not Batch.objects.filter(pk=old["batch"].pk).exists()
    assert not Essay.objects.filter(batch_id=old["batch"].pk).exists()
    assert not Operation.objects.filter(dedupe_key__startswith=f"batches:{old['batch'].pk}:"
                                        ).exists()
    assert not InterviewSession.objects.filter(pk=old["session"].pk).exists()
    assert not Operation.objects.filter(pk__in=[old["lone"].pk, old["gone_chain"].pk,
                                                old["gone_retry"].pk]).exists()
    # Kept: the recent work of every workload, an import profile's latest passes (however
    # old), and an old failure whose retry is recent (the chain stays whole).
    assert Job.objects.filter(pk=recent["job"].pk).exists()
    assert all(cell.operation_id for cell in recent["job"].executions.all())
    assert PhaseOutput.objects.filter(batch=recent["batch"]).exists()
    assert InterviewTurn.objects.filter(session=recent["session"]).exists()
    assert Operation.objects.filter(pk__in=old["passes"]).count() == 2
    assert Operation.objects.filter(pk__in=[old["kept_chain"].pk, recent["kept_retry"].pk]
                                    ).count() == 2
    # Nothing left pointing nowhere; what remains is exactly what was not pruned.
    assert not Attempt.objects.exclude(operation__in=Operation.objects.all()).exists()
    assert not Notification.objects.exclude(operation__in=Operation.objects.all()).exists()
    # The figures read the same.
    assert figures() == before
    assert not any(retention.prune().values())  # nothing more to do


def test_no_page_or_api_answer_errors_after_a_prune(history, web, api, user):
    old, recent = history
    retention.prune()
    user.is_staff = user.is_superuser = True
    user.save()
    pages = ["/", "/operations/", "/notifications/", "/jobs/", recent["job"].get_absolute_url(),
             "/batches/", recent["batch"].get_absolute_url(),
             recent["session"].get_absolute_url(), "/interviews/",
             recent["kept_retry"].get_absolute_url(),
             Operation.objects.get(pk=old["kept_chain"].pk).get_absolute_url(),
             "/operations/metrics/?window=30d", "/operations/gates/", "/metrics",
             "/admin/operations/operation/", "/admin/operations/operation/?status=failed"]
    for path in pages:
        assert web.get(path).status_code == 200, path
    assert web.get(old["job"].get_absolute_url()).status_code == 404
    for path in ["/api/v1/operations/", f"/api/v1/operations/{recent['kept_retry'].pk}/",
                 "/api/v1/jobs/", f"/api/v1/jobs/{recent['job'].pk}/"]:
        assert api.get(path).status_code == 200, path
    assert api.get(f"/api/v1/operations/{old['lone'].pk}/").status_code == 404


def test_unfinished_or_uncounted_work_is_never_pruned(user):
    running = OperationFactory(owner=user, status=Status.PROCESSING, attempt_count=1)
    uncounted = OperationFactory(owner=user, failed=True)
    age((Operation.objects.all(), ["created_at", "finished_at"]))
    assert retention.prune()["operations"] == 0  # the failed one is not counted yet
    rollups.fold_all()
    assert retention.prune()["operations"] == 1
    assert Operation.objects.filter(pk=running.pk).exists()
    assert not Operation.objects.filter(pk=uncounted.pk).exists()


def test_prune_history_prints_what_it_deleted(user):
    OperationFactory(owner=user, failed=True)
    age((Operation.objects.all(), ["created_at", "finished_at"]))
    out = io.StringIO()
    call_command("prune_history", stdout=out)
    assert "Pruned history finished before" in out.getvalue()
    assert "1 operations" in out.getvalue() and "1 attempts" in out.getvalue()
    out = io.StringIO()
    call_command("prune_history", "--days", "90", stdout=out)
    assert "nothing to delete" in out.getvalue()


def test_the_dispatcher_prunes_on_its_own(user, monkeypatch):
    from threading import Event

    from operations import dispatcher

    OperationFactory(owner=user, failed=True)
    age((Operation.objects.all(), ["created_at", "finished_at"]))
    stop, pruned, prune = Event(), [], retention.prune

    def prune_then_stop():
        pruned.append(prune())
        stop.set()

    monkeypatch.setattr(dispatcher.retention, "prune", prune_then_stop)
    dispatcher.run_forever(tick=0.01, first_prune_after=0.0, stop=stop)
    # Its sweep counted the failure into the rollups first; then the prune deleted it.
    assert pruned[0]["operations"] == 1 and not Operation.objects.exists()
