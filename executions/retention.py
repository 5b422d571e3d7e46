"""What executions keep: a job whose cells all finished before the horizon goes whole (its
questions, cells and their operations); a job with a cell still running or recent stays."""
from executions.models import Job
from operations import retention


def operations_of(job) -> list:
    return list(job.executions.values_list("operation_id", flat=True))


retention.register(retention.whole(Job, "jobs", operations_of))
