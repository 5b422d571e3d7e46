from django.core.management.base import BaseCommand

from operations import rollups


class Command(BaseCommand):
    help = ("Count the figures again from the operation and attempt rows (after a restore, or "
            "rows changed behind the engine's back). Periods before the last prune keep the "
            "figures of the rows pruned from them. Safe on a live system.")

    def handle(self, *args, **options):
        folded = rollups.fold_all()
        report = rollups.rebuild()
        since = report["since"]
        self.stdout.write(
            f"Counted {folded} finished rows not counted yet; rebuilt the figures "
            + (f"from {since:%Y-%m-%d %H:%M} UTC (history before was pruned)" if since
               else "of the whole history")
            + f": {report['replaced']} rollup rows replaced by {report['written']}.")
