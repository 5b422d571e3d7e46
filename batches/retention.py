"""What batches keep: a batch whose phases all finished before the horizon goes whole (its
essays, outputs and operations). Phase operations are found by their dedupe key, not by a row
pointing at them, so the engine leaves the batch kinds to this pruner."""
from batches.models import Batch
from operations import retention
from operations.models import Operation


def operations_of(batch) -> list:
    return list(Operation.objects.filter(dedupe_key__startswith=f"batches:{batch.pk}:")
                .values_list("pk", flat=True))


retention.register(retention.whole(Batch, "batches", operations_of), owns=("batches.",))
