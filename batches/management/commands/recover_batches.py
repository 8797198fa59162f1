from django.core.management.base import BaseCommand

from batches.engine import recover


class Command(BaseCommand):
    help = "Reclaim expired leases of dead workers and restart batches that have work but no live runner."

    def handle(self, *args, **options):
        result = recover()
        self.stdout.write(
            "reclaimed {reclaimed}, failed {failed}, restarted {restarted}, finished {finished}".format(
                **result
            )
        )
