"""Lead import: a 10,000 and a 50,000-row file, dry run then import, with peak memory and time.

    .venv/bin/python bench/import_leads.py            # CSV 10k, CSV 50k, XLSX 50k

A fresh database of its own. Each file has 10% rows that update leads already there, 1% invalid rows
(a score of 150) and the rest new leads. Every file is imported by a process of its own (the code a
qcluster worker runs: `leads.services.lead_import_work`, slice after slice), so its peak RSS (VmHWM)
belongs to that file alone. Bounded memory means the 50,000-row peak stays within 25% of the
10,000-row one: the file is read in chunks of 1,000 rows and nothing grows with it but the set of match
keys already seen (for in-file duplicates), about 100 bytes a row.
"""

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import DATABASE, LOG_DIR, ROOT, Figures, bench_env, django_setup, fresh_database, log, make_leads

HEADER = ["Company", "Website", "Email", "Phone", "City", "State", "Industry", "Employees", "Score"]


def rows(count: int, prefix: str):
    for i in range(count):
        score = 150 if i % 100 == 7 else 40 + i % 60
        yield [
            f"{prefix.title()} {i} Dental",
            f"https://{prefix}-{i}.example.com",
            f"info@{prefix}-{i}.example.com",
            f"555-{i % 10_000:04d}",
            "Springfield",
            "Illinois",
            "Dentist",
            str(i % 250),
            str(score),
        ]


def write_file(path: Path, count: int, prefix: str) -> None:
    if path.suffix == ".csv":
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(HEADER)
            writer.writerows(rows(count, prefix))
        return
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(HEADER)
    for row in rows(count, prefix):
        sheet.append(row)
    workbook.save(path)


def vm(field: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS now, VmHWM the peak so far)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def child(path: Path) -> None:
    """Import one file as a worker would and print the figures as JSON."""
    django_setup(bench_env(f"{DATABASE}_import"))
    from django.contrib.auth import get_user_model
    from django.core.files import File

    from leads import services

    user, _ = get_user_model().objects.get_or_create(username="bench-import")
    baseline = vm("VmRSS")
    started = time.perf_counter()
    with path.open("rb") as handle:
        lead_import = services.lead_import_create(upload=File(handle, name=path.name), user=user)
    while services.lead_import_work(lead_import_id=lead_import.pk):
        pass
    checked = time.perf_counter()
    lead_import.refresh_from_db()
    services.lead_import_confirm(lead_import=lead_import, user=user)
    while services.lead_import_work(lead_import_id=lead_import.pk):
        pass
    finished = time.perf_counter()
    lead_import.refresh_from_db()
    print(
        json.dumps(
            {
                "status": lead_import.status,
                "error": lead_import.error,
                "rows": lead_import.rows_total,
                "new": lead_import.imported_new,
                "updated": lead_import.imported_updated,
                "unchanged": lead_import.imported_unchanged,
                "invalid": lead_import.imported_invalid,
                "dry_run_s": checked - started,
                "import_s": finished - checked,
                "baseline_rss": baseline,
                "peak_rss": vm("VmHWM"),
            }
        )
    )


def main() -> None:
    env = bench_env(f"{DATABASE}_import")
    fresh_database(env)
    django_setup(env)
    folder = LOG_DIR / "import"
    folder.mkdir(parents=True, exist_ok=True)
    figures = Figures("Lead import, dry run then import, one process per file (PostgreSQL)")
    peaks: dict[str, int] = {}
    for name, count in (("csv10k.csv", 10_000), ("csv50k.csv", 50_000), ("xlsx50k.xlsx", 50_000)):
        prefix = Path(name).stem
        path = folder / name
        write_file(path, count, prefix)
        make_leads(count // 10, prefix=prefix)
        log(f"importing {name} ({path.stat().st_size / 1e6:.1f} MB)")
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(path)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        invalid_updates = count // 1000
        expected = {
            "new": count - count // 10 - (count // 100 - invalid_updates),
            "updated": count // 10 - invalid_updates,
        }
        expected.update({"unchanged": 0, "invalid": count // 100})
        got = {key: result[key] for key in expected}
        peaks[name] = result["peak_rss"]
        figures.add(
            f"{name}: {count:,} rows, status {result['status']}",
            ", ".join(f"{key} {value}" for key, value in got.items()),
            "as in the file",
            result["status"] == "done" and got == expected,
        )
        figures.add(
            f"{name}: time",
            f"dry run {result['dry_run_s']:.1f} s, import {result['import_s']:.1f} s "
            f"({count / (result['dry_run_s'] + result['import_s']):,.0f} rows/s overall)",
        )
        figures.add(
            f"{name}: peak RSS",
            f"{result['peak_rss'] / 2**20:.0f} MiB (after set-up {result['baseline_rss'] / 2**20:.0f} MiB)",
        )
    for name in ("csv50k.csv", "xlsx50k.xlsx"):
        ratio = peaks[name] / peaks["csv10k.csv"]
        figures.add(f"peak RSS {name} / csv10k.csv", f"{ratio:.2f}", "<= 1.25 (bounded)", ratio <= 1.25)
    figures.exit()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=Path)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child)
    else:
        main()
