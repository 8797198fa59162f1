import threading
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from batches.engine import run_slice
from batches.selectors import batch_snapshot
from batches.services import batch_create_draft, batch_launch
from leadgen.display import usd
from leadgen.errors import ServiceError
from leads.selectors import lead_list


def _filter(value: str) -> tuple[str, str]:
    name, sep, wanted = value.partition("=")
    if not sep or not name.strip():
        raise CommandError(f"--filter takes field=value, got {value!r}.")
    return name.strip(), wanted.strip()


class Command(BaseCommand):
    help = "Create a batch from lead filters and run it here, with a progress bar (same services as the API)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--filter", action="append", default=[], metavar="FIELD=VALUE", help="Lead filter."
        )
        parser.add_argument("--limit", type=int, default=None, help="At most this many leads (oldest first).")
        parser.add_argument("--budget", default=None, help="Batch budget in USD.")
        parser.add_argument("--concurrency", type=int, default=10)
        parser.add_argument("--max-retries", type=int, default=3)
        parser.add_argument("--name", default="")
        parser.add_argument("--include-recent", action="store_true", help="Also leads reported recently.")
        parser.add_argument("--user", default=None, help="Username of the launching user.")
        parser.add_argument(
            "--brand",
            type=int,
            default=None,
            help="Brand profile id of the reports (default: the default one).",
        )

    def handle(self, *args, **options):
        filters = dict(_filter(value) for value in options["filter"])
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1.")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user {options['user']!r}.")
        try:
            leads = lead_list(filters=filters).order_by("pk")
            if options["limit"]:
                leads = leads[: options["limit"]]
            batch = batch_create_draft(
                user=user,
                queryset=leads,
                name=options["name"],
                concurrency=options["concurrency"],
                max_retries=options["max_retries"],
                budget_usd=options["budget"],
                include_recent=options["include_recent"],
                **({"brand": options["brand"]} if options["brand"] is not None else {}),
            )
            batch = batch_launch(batch=batch, user=user, enqueue=False)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Batch #{batch.pk} {batch.name!r}: {batch.leads.count()} leads, "
            f"estimated {usd(batch.estimated_cost_usd)} ({batch.provider_mode})"
        )
        worker = threading.Thread(target=self._run, args=(batch.pk,), daemon=True)
        worker.start()
        snapshot = batch_snapshot(batch_id=batch.pk)
        with tqdm(total=snapshot["total"], unit="lead", disable=None, file=self.stderr._out) as bar:
            while True:
                snapshot = batch_snapshot(batch_id=batch.pk)
                done = snapshot["total"] - snapshot["pending"] - snapshot["processing"]
                bar.update(done - bar.n)
                bar.set_postfix(cost=snapshot["actual_cost_usd"], failed=snapshot["failed"], refresh=False)
                if snapshot["finished_at"] or not worker.is_alive():
                    break
                time.sleep(0.3)
        worker.join()
        snapshot = batch_snapshot(batch_id=batch.pk)
        self.stdout.write(
            f"Batch #{batch.pk} {snapshot['status']}: {snapshot['succeeded']} succeeded, "
            f"{snapshot['failed']} failed, {snapshot['skipped']} skipped, {snapshot['cancelled']} cancelled; "
            f"cost {usd(snapshot['actual_cost_usd'])} (estimated {usd(snapshot['estimated_cost_usd'])})"
            + (f"; stopped: {snapshot['stop_reason']}" if snapshot["stop_reason"] else "")
        )

    @staticmethod
    def _run(batch_id: int) -> None:
        from django.db import connections

        try:
            while True:
                run_slice(batch_id=batch_id, follow_up=False)
                snapshot = batch_snapshot(batch_id=batch_id)
                if snapshot["finished_at"] or snapshot["status"] not in ("queued", "running"):
                    break
        finally:
            connections.close_all()
