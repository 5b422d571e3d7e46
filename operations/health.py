"""Health for load balancers and orchestrators, with django-health-check:

- `/healthz` — the process answers (no database, no broker: a liveness probe);
- `/readyz` — the database answers, the broker answers, and a dispatcher has beaten its
  heartbeat in the last few seconds. Outside services (the AI provider, object storage) are
  not asked: when one is down the app is fine, its work waits behind the service's gate, and
  taking every web server out of rotation would only make it worse (the gates page and
  /metrics say which dependency is down).

A failing check answers 503 and names the check (JSON with `Accept: application/json`).
"""
import dataclasses

from django.conf import settings
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

from operations.models import Host, db_now_plus


@dataclasses.dataclass
class Process(HealthCheck):
    """This process is alive and serving requests."""

    def run(self):
        return None


@dataclasses.dataclass
class OrmBroker(HealthCheck):
    """django-q2's ORM broker: its queue table answers."""

    def run(self):
        from django_q.models import OrmQ

        try:
            OrmQ.objects.using(settings.Q_CLUSTER["orm"]).exists()
        except Exception as exc:  # noqa: BLE001 - any failure means the broker is away
            raise ServiceUnavailable("the ORM broker's queue does not answer") from exc


@dataclasses.dataclass
class RedisBroker(HealthCheck):
    """The Redis broker answers PING."""

    def run(self):
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2,
                                 socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            raise ServiceUnavailable("the Redis broker does not answer") from exc


@dataclasses.dataclass
class Dispatcher(HealthCheck):
    """Some host's dispatcher beat its heartbeat recently (due retries are being started)."""

    def run(self):
        max_age = settings.REBOUND["READY_DISPATCHER_SECONDS"]
        try:
            alive = Host.objects.filter(stopped_at__isnull=True,
                                        dispatcher_beat_at__gte=db_now_plus(-max_age)).exists()
        except Exception as exc:  # noqa: BLE001
            raise ServiceUnavailable("cannot read the dispatchers' heartbeats") from exc
        if not alive:
            raise ServiceUnavailable(f"no dispatcher heartbeat in the last {max_age:g} s")


class ProbeView(HealthCheckView):
    """django-health-check's view, answering 503 (not 500) when a check fails: the service
    is unavailable, nothing crashed."""

    async def get(self, request, *args, **kwargs):
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:
            response.status_code = 503
        return response


class ReadinessView(ProbeView):
    """The checks follow the settings of the moment (which broker)."""

    @property
    def checks(self):
        return ["health_check.checks.Database",
                RedisBroker if settings.REDIS_URL else OrmBroker, Dispatcher]


liveness = ProbeView.as_view(checks=[Process])
readiness = ReadinessView.as_view()
