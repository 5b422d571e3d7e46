"""Workloads are apps of their own: the interview tables moved out of the engine app keep
their rows on a database that ran the old migration history, and every app seeds its demo."""
import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from interviews.models import InterviewSession, InterviewTurn
from operations.models import Operation


@pytest.mark.django_db(transaction=True)
def test_interview_rows_written_under_the_old_history_survive_the_move(user):
    executor = MigrationExecutor(connection)
    executor.migrate([("operations", "0001_initial"), ("interviews", None)])
    old = MigrationExecutor(connection).loader.project_state(
        [("operations", "0001_initial")]).apps
    session = old.get_model("operations", "InterviewSession").objects.create(
        owner_id=user.pk, topic="legacy", region="eu-west")
    old.get_model("operations", "InterviewTurn").objects.create(
        session=session, number=1, question="What is a lease?")

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    moved = InterviewSession.objects.get()
    assert (moved.pk, moved.topic, moved.owner_id) == (session.pk, "legacy", user.pk)
    assert InterviewTurn.objects.get().question == "What is a lease?"
    assert "operations_interviewsession" not in connection.introspection.table_names()


@pytest.mark.django_db
def test_seed_demo_seeds_every_installed_workload_once(export_storage):
    call_command("seed_demo")
    call_command("seed_demo")  # a second run adds nothing
    from django.contrib.auth import get_user_model

    demo = get_user_model().objects.get(username="demo")
    assert InterviewSession.objects.filter(owner=demo).count() == 1
    assert demo.profile.export_key
    kinds = set(Operation.objects.filter(owner=demo).values_list("kind", flat=True))
    assert {"diagnostics.flaky", "imports.full_pass", "interview.question_generation"} <= kinds
