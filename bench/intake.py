"""Time CSV intake (parse + validate) and template rendering at job scale.

Run: /work/venv/bin/python bench/intake.py [--rows 50000]
Prints rows/s, seconds and peak memory for intake, and microseconds per rendered message.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.core.settings import Settings  # noqa: E402
from backend.jobs.intake import RecipientRow, open_csv  # noqa: E402
from backend.mail.templates import build_context, check_variables, render  # noqa: E402

FIRST = ["Ana", "Björn", "Chloé", "Dmitri", "Élodie", "Fatima", "Γιώργος", "Иван", "José", "Kai"]
LAST = ["García", "Müller", "O'Brien", "Nguyen", "Smith", "Παπαδόπουλος", "Петров", "Dubois"]


def write_csv(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "firstname", "lastname", "username", "password", "department"])
        for number in range(rows):
            first = FIRST[number % len(FIRST)]
            last = LAST[number % len(LAST)]
            writer.writerow([
                f"user{number}@example.com", first, last, f"user{number}",
                f"Tmp-{number:06d}-pw!", f"Department {number % 40}",
            ])


def bench_intake(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    source = open_csv(path)
    accepted = sum(1 for row in source if type(row) is RecipientRow)
    return accepted, time.perf_counter() - started


def peak_memory(path: Path) -> float:
    """Peak Python allocations (MB) while streaming the file: the dedupe index, not the rows."""
    tracemalloc.start()
    for _ in open_csv(path):
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6


def bench_render(path: Path, limit: int) -> float:
    settings = Settings(site_name="Example Academy", login_url="https://moodle.example.com/login/index.php")
    source = open_csv(path)
    check_variables("welcome_std", [*source.columns], settings=settings)
    rows = [row for _, row in zip(range(limit), source)]
    render("welcome_std", build_context(row_fields={"email": "x@example.com", "username": "x"}, variables={},
                                        template_data={}, settings=settings), settings=settings)
    started = time.perf_counter()
    for row in rows:
        context = build_context(
            row_fields={"email": row.email, "firstname": row.firstname, "lastname": row.lastname,
                        "username": row.username, "password": row.password, "userid": row.userid},
            variables=row.variables, template_data={}, settings=settings,
        )
        render("welcome_std", context, settings=settings)
    return (time.perf_counter() - started) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.csv"
        write_csv(path, args.rows)
        size = path.stat().st_size
        best = min(bench_intake(path)[1] for _ in range(3))
        accepted, _ = bench_intake(path)
        print(f"intake: {accepted:,} rows ({size / 1e6:.1f} MB) in {best:.3f} s (best of 3), "
              f"{accepted / best:,.0f} rows/s")
        print(f"intake peak Python memory while streaming (tracemalloc): {peak_memory(path):.1f} MB")
        per_message = bench_render(path, limit=min(args.rows, 10_000))
        print(f"render welcome_std (subject + text + html, with context): {per_message * 1e6:.1f} µs per message, "
              f"{1 / per_message:,.0f} messages/s")


if __name__ == "__main__":
    main()
