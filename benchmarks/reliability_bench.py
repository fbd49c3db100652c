"""Reliability benchmark: the bad-day suite at its full size, and the figures it measures.

The tests in tests/reliability assert behaviour (nothing lost, duplicated or
forgotten; the order of events); how fast the daemon repairs things is measured
here. This runs that suite (pytest, in this interpreter, from the checkout) at
`ORCHESTRATOR_RELIABILITY_SCALE=full` (the sizes docs/reliability.md describes; `--scale
long` for the long run) with `ORCHESTRATOR_RELIABILITY_REPORT` pointed at a JSON-lines
file, then prints per scenario the figures docs/reliability.md records: coverage,
window start latency and stop lateness, restart delays after exits, the lateness of
boundaries inside a long pass, how long unmanageable sessions blocked a recording,
launch to READY after a SIGKILL, and the raw counts.

Run: `.venv/bin/python benchmarks/reliability_bench.py [--scale full|long] [--json FILE]
[-k EXPRESSION]` (about 10 minutes at `full` on 2 cores, 25 at `long`). The exit
status is pytest's: a scenario whose invariants fail is reported and fails the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: (figure key, how it is shown): the figures docs/reliability.md quotes, when a
#: scenario records them.
SHOWN = (
    ("windows", "windows"),
    ("kills", "SIGKILLs"),
    ("killed_before_ready", "killed before READY"),
    ("exits", "exits"),
    ("coverage_min", "coverage net min"),
    ("coverage_median", "coverage net median"),
    ("coverage_raw_min", "coverage raw min"),
    ("start_latency_s", "window start latency s"),
    ("stop_lateness_max_net_s", "stop lateness max (net) s"),
    ("restart_delay_s", "restart delay s (bound 4.5)"),
    ("inside", "boundaries inside a long pass"),
    ("launch_to_ready_s", "launch to READY s"),
    ("unmanageable", "unmanageable sessions"),
    ("reload_latency_max_s", "edit to reload max s"),
    ("refused", "second writers refused"),
    ("duplicates", "duplicates"),
    ("answers_code53", "53s"),
    ("forgotten", "forgotten"),
    ("secret_leaks", "secret leaks"),
    ("answers_429", "429s"),
    ("violations", "violations"),
)


def run(scale: str, report: Path, select: str | None) -> int:
    env = dict(os.environ)
    env["ORCHESTRATOR_RELIABILITY_SCALE"] = scale
    env["ORCHESTRATOR_RELIABILITY_REPORT"] = str(report)
    args = [sys.executable, "-m", "pytest", "tests/reliability", "-m", "reliability", "-q"]
    args += ["-p", "no:cacheprovider", "-s"]
    if select:
        args += ["-k", select]
    return subprocess.run(args, cwd=ROOT, env=env, check=False).returncode


def render(records: list[dict[str, Any]], scale: str, seconds: float) -> str:
    lines = [
        f"# Reliability figures ({scale} scale, {seconds:.0f} s)",
        "",
        f"Machine: {records[0]['machine'] if records else '?'}; date {time.strftime('%Y-%m-%d')}.",
        "",
    ]
    for record in records:
        lines += [f"## {record['test']} ({record['seconds']} s)", ""]
        for key, label in SHOWN:
            if key in record and record[key] not in (None, [], {}):
                lines.append(f"- {label}: {json.dumps(record[key], sort_keys=True)}")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["full", "long"], default="full")
    parser.add_argument("--json", type=Path, default=None, help="keep the raw JSON lines here")
    parser.add_argument("-k", dest="select", default=None, help="pytest -k: some scenarios")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reliability-bench-") as tmp:
        report = args.json or Path(tmp) / "figures.jsonl"
        started = time.monotonic()
        code = run(args.scale, report, args.select)
        text = report.read_text(encoding="utf-8") if report.exists() else ""
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    print(render(records, args.scale, time.monotonic() - started))
    return code


if __name__ == "__main__":
    sys.exit(main())
