"""Start-up checks: a delivery configuration that would run operations twice is refused."""
from django.conf import settings
from django.core.checks import Error, register


def q_cluster_errors(conf: dict) -> list[Error]:
    errors = []
    timeout, retry = conf.get("timeout"), conf.get("retry", 60)
    if not timeout:
        errors.append(Error(
            "Q_CLUSTER has no 'timeout'.",
            hint="Set REBOUND_TASK_TIMEOUT (seconds) so a stuck task is stopped.",
            id="rebound.E001"))
    elif retry <= timeout:
        errors.append(Error(
            f"Q_CLUSTER 'retry' ({retry}s) must be larger than 'timeout' ({timeout}s): "
            "otherwise the broker hands a still-running task to a second worker.",
            hint="Set REBOUND_TASK_RETRY above REBOUND_TASK_TIMEOUT, or leave it unset.",
            id="rebound.E002"))
    if conf.get("max_attempts") != 1:
        errors.append(Error(
            "Q_CLUSTER 'max_attempts' must be 1: the engine decides every retry.",
            id="rebound.E003"))
    if not conf.get("ack_failures"):
        errors.append(Error(
            "Q_CLUSTER 'ack_failures' must be true, or a failed delivery is re-run forever.",
            id="rebound.E004"))
    return errors


@register()
def check_q_cluster(app_configs, **kwargs):
    return q_cluster_errors(getattr(settings, "Q_CLUSTER", {}))
