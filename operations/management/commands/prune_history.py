from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from operations import retention, rollups


class Command(BaseCommand):
    help = ("Delete finished history older than REBOUND_KEEP_DAYS (the dispatcher also does it "
            "once an hour), in small batches; print what was deleted. The figures are kept.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=float, default=None,
                            help="keep this many days instead of REBOUND_KEEP_DAYS")
        parser.add_argument("--batch", type=int, default=retention.BATCH,
                            help="rows per transaction (default %(default)s)")

    def handle(self, *args, days=None, batch=retention.BATCH, **options):
        days = settings.REBOUND["KEEP_DAYS"] if days is None else days
        if days <= 0 or batch < 1:
            raise CommandError("--days must be more than 0 and --batch at least 1.")
        before = timezone.now() - timedelta(days=days)
        rollups.fold_all()  # only counted rows are pruned: count what finished first
        deleted = retention.prune(before, batch)
        what = ", ".join(f"{n} {name}" for name, n in sorted(deleted.items()) if n)
        self.stdout.write(f"Pruned history finished before {before:%Y-%m-%d %H:%M} UTC: "
                          + (what or "nothing to delete") + ".")
