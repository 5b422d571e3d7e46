"""The acts of batches: create one from essays."""
from django.db import transaction

from batches.models import Batch, Essay

MAX_ESSAYS, MAX_ESSAY_CHARS = 500, 20_000


def create_batch(owner, *, title: str, essays: list[str], region: str = "") -> Batch:
    with transaction.atomic():
        batch = Batch.objects.create(owner=owner, title=title, region=region)
        Essay.objects.bulk_create(Essay(batch=batch, index=i, text=text)
                                  for i, text in enumerate(essays))
    return batch
