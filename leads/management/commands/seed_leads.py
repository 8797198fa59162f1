from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from leads.services import lead_seed

DEFAULT_SEED = 1


class Command(BaseCommand):
    help = (
        "Create realistic demo leads with Faker. The same --seed always gives the same leads; some have "
        "no website or email, a few an unreachable (*.invalid) or malformed site."
    )

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, required=True, help="How many leads to create.")
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"Default {DEFAULT_SEED}.")

    def handle(self, *args, count: int, seed: int, **options):
        if count < 0:
            raise CommandError("--count must be zero or more.")
        with tqdm(total=count, unit="lead", file=self.stderr._out, disable=options["verbosity"] == 0) as bar:
            inserted = lead_seed(count=count, seed=seed, on_chunk=bar.update)
        if options["verbosity"] > 0:
            self.stdout.write(f"Created {inserted} leads (seed {seed}).")
