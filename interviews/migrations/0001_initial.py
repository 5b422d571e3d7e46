"""Interview practice moved out of the engine app. Its tables were created by
operations.0001 as operations_interviewsession / operations_interviewturn: this migration takes
the models over in Django's state and renames the tables, on a fresh database and on one that
already ran the old history alike. operations.0002 then forgets the models there."""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("operations", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]
    # The engine's migration that forgets the models must come after this one takes them over;
    # the dependency is declared here so that the engine names no workload.
    run_before = [("operations", "0002_interviews_moved_out")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="InterviewSession",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                                   serialize=False, verbose_name="ID")),
                        ("topic", models.CharField(max_length=200)),
                        ("region", models.CharField(blank=True, max_length=40)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("owner", models.ForeignKey(
                            on_delete=django.db.models.deletion.CASCADE,
                            related_name="interview_sessions", to=settings.AUTH_USER_MODEL)),
                    ],
                    options={"ordering": ["-created_at"],
                             "db_table": "operations_interviewsession"},
                ),
                migrations.CreateModel(
                    name="InterviewTurn",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                                   serialize=False, verbose_name="ID")),
                        ("number", models.PositiveSmallIntegerField()),
                        ("question", models.TextField(blank=True)),
                        ("answer", models.TextField(blank=True)),
                        ("answered_at", models.DateTimeField(blank=True, null=True)),
                        ("feedback", models.TextField(blank=True)),
                        ("session", models.ForeignKey(
                            on_delete=django.db.models.deletion.CASCADE, related_name="turns",
                            to="interviews.interviewsession")),
                        ("feedback_operation", models.ForeignKey(
                            blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                            related_name="+", to="operations.operation")),
                        ("question_operation", models.ForeignKey(
                            null=True, on_delete=django.db.models.deletion.SET_NULL,
                            related_name="+", to="operations.operation")),
                    ],
                    options={"ordering": ["session", "number"],
                             "db_table": "operations_interviewturn",
                             "constraints": [models.UniqueConstraint(
                                 fields=("session", "number"), name="one_turn_per_number")]},
                ),
            ],
            database_operations=[],
        ),
        migrations.AlterModelTable(name="interviewsession", table=None),
        migrations.AlterModelTable(name="interviewturn", table=None),
    ]
