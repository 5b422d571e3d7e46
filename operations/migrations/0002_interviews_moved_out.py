"""Interview practice is its own app now (interviews.0001 took over and renamed the tables);
the engine forgets the models in Django's state and touches no table."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("operations", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="InterviewTurn"),
                migrations.DeleteModel(name="InterviewSession"),
            ],
            database_operations=[],
        ),
    ]
