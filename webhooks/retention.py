"""What webhooks keep: an event whose deliveries all finished before the horizon goes, with
its deliveries and their operations. Deliveries of a deleted endpoint left their operations
unreferenced: the engine prunes those like any finished history."""
from operations import retention
from webhooks.models import Event


def operations_of(event) -> list:
    return list(event.deliveries.values_list("operation_id", flat=True))


retention.register(retention.whole(Event, "webhook_events", operations_of))
