"""Benchmark (issue 21): validate, start-up and reload against the libyaml parse-only floor.

Why it exists: the targets of issue 21 are ratios to a floor, "libyaml alone (PyYAML's
CSafeLoader) parsing the same files", measured in the same run. The floor is a whole
process, as `validate` is: the interpreter, `import yaml`, reading every file and
`yaml.load_all(..., Loader=CSafeLoader)` on it. PyYAML is no dependency of the
project: the floor runs with `--floor-python`, an interpreter of a virtualenv that
has PyYAML with libyaml (`python3 -m venv V && V/bin/pip install pyyaml`).

What it measures (every figure a median, min and max of several runs; each ratio is
taken pair by pair, the command and the floor run in turn, A B A B ...):

- `validate`: `python -m orchestrator validate DIR` of 1,000 manifests of
  validate_bench's mix, one per file and 50 per file, and of 10,000 one per file in
  50 directories, against the floor of the same files; wall, CPU (user + sys) and
  peak RSS of the process.
- `daemon`: `orchestrator run` (tests/harness, with the emulator as daemon_bench
  runs it) with 10,000 manifests (daemon_bench's `idle` manifests: cron windows
  hours away, so the API is never called), one per file in 50 directories: launch to
  `daemon.ready` on a first start (empty store) and on a restart with the files
  unchanged (store filled); the `manifests.reloaded` duration of a SIGHUP with
  nothing changed, of a touch of every file (watch), of a rewrite of every file with
  a changed label (watch; as a `git checkout`), of one changed file (watch, `--edits`
  times); VmRSS and VmHWM. The floor of the same 10,000 files is timed in each run.
- `profile`: cProfile of `validate` of 1,000 manifests one per file (by cumulative
  and by own time), `-X importtime` of the same command, and py-spy (when the
  interpreter's environment has it) of the daemon's first start, of a restart, and
  of a restart followed by a full reload (its samples less the restart's are the
  reload's).

It measures the code of `--repo` (default: this checkout) with `--python` (default:
this interpreter), re-executing itself with that interpreter, and imports the
manifest generators (validate_bench, daemon_bench) and tests/harness from `--repo`,
so that a worktree of a fixed commit is measured whatever happens in this checkout.
Children run from compiled bytecode, as an installed package does: the script unsets
PYTHONDONTWRITEBYTECODE and compiles `--repo`'s package first (its `__pycache__`,
which git ignores, is all it writes there). Every child runs in a temporary directory
(never in a checkout, whose `orchestrator` package `python -m` would pick up) and is
ended by its pid.

Must never: change the tracked files of `--repo`, or signal a process it did not start.

    .venv/bin/python benchmarks/speed_bench.py --floor-python /tmp/yaml-floor/bin/python \
        [--python /tmp/speed-base-venv/bin/python --repo /tmp/speed-base] \
        [--only validate daemon profile] [--runs 5] [--daemon-runs 3] [--edits 10] \
        [--out DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FLOOR = r"""
import os, sys, yaml
assert yaml.__with_libyaml__, "PyYAML without libyaml"
n = 0
for root, dirs, files in os.walk(sys.argv[1]):
    dirs.sort()
    for name in sorted(files):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(root, name), encoding="utf-8") as f:
                n += sum(1 for _ in yaml.load_all(f.read(), Loader=yaml.CSafeLoader))
print(n)
"""
DIRECTORIES = 50


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter to measure")
    parser.add_argument("--repo", type=Path, default=HERE.parent, help="the code to measure")
    parser.add_argument("--floor-python", default="", help="an interpreter with PyYAML")
    parser.add_argument(
        "--only", nargs="+", default=["validate", "daemon", "profile"], help="parts to run"
    )
    parser.add_argument("--runs", type=int, default=5, help="counted runs of each command")
    parser.add_argument("--daemon-runs", type=int, default=3, help="daemon runs (each fresh)")
    parser.add_argument("--edits", type=int, default=10, help="one-file edits per daemon run")
    parser.add_argument("--count", type=int, default=10_000, help="the large trees' size")
    parser.add_argument("--out", type=Path, default=None, help="keep JSON and profiles here")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="render a saved speed.json; measure nothing"
    )
    return parser.parse_args()


ARGS = parse_args()
if os.environ.get("SPEED_BENCH_CHILD") != "1" and ARGS.python != sys.executable:
    os.execve(  # noqa: S606  # the same script under the interpreter measured
        ARGS.python,
        [ARGS.python, str(Path(__file__).resolve()), *sys.argv[1:]],
        {**os.environ, "SPEED_BENCH_CHILD": "1"},
    )
REPO = ARGS.repo.resolve()
sys.path[:] = [str(REPO), str(REPO / "benchmarks")] + [
    p for p in sys.path if Path(p or ".").resolve() != HERE
]

import daemon_bench  # noqa: E402  # the rig: emulator + daemon through tests/harness
import validate_bench  # noqa: E402  # the manifests of the validate mix

import orchestrator  # noqa: E402
from tests.harness import event_time  # noqa: E402

if not Path(orchestrator.__file__).resolve().is_relative_to(REPO):
    raise SystemExit(f"{sys.executable} imports orchestrator from {orchestrator.__file__}")


# -- timing whole processes ---------------------------------------------------------------


def run_once(cmd: Sequence[str], cwd: Path) -> dict[str, float]:
    """One run of `cmd`: wall seconds, CPU seconds (user + sys) and peak RSS (MB) of the
    process, from the kernel's accounting of the reaped child; its output in a file."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        child = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {child.returncode}:\n{text[-2000:]}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": usage.ru_maxrss / 1024,
        "last": text.strip().splitlines()[-1] if text.strip() else "",
    }  # type: ignore[dict-item]


def stats(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def paired(a: Sequence[str], b: Sequence[str], cwd: Path, runs: int) -> dict[str, Any]:
    """`a` and `b` in turn after one warm-up of each; figures of each and the ratio a/b
    pair by pair."""
    run_once(a, cwd)
    run_once(b, cwd)
    ra, rb = [], []
    for _ in range(runs):
        ra.append(run_once(a, cwd))
        rb.append(run_once(b, cwd))
    out: dict[str, Any] = {"load": os.getloadavg()[0], "a_last": ra[-1]["last"]}
    out["b_last"] = rb[-1]["last"]
    for key in ("wall", "cpu", "rss"):
        out[f"a_{key}"] = stats([r[key] for r in ra])
        out[f"b_{key}"] = stats([r[key] for r in rb])
        out[f"ratio_{key}"] = stats([x[key] / y[key] for x, y in zip(ra, rb, strict=True)])
    return out


def floor_cmd(directory: Path) -> list[str]:
    return [ARGS.floor_python, "-c", FLOOR, str(directory)]


def validate_cmd(directory: Path, *extra: str) -> list[str]:
    return [sys.executable, *extra, "-m", "orchestrator", "validate", str(directory)]


def spread(root: Path, count: int, text: Callable[[int], str]) -> list[Path]:
    """`count` manifests, one per file, in DIRECTORIES directories."""
    files = []
    for i in range(count):
        directory = root / f"d{i % DIRECTORIES:02d}"
        directory.mkdir(exist_ok=True)
        path = directory / f"m-{i:05d}.yaml"
        path.write_text(text(i), encoding="utf-8")
        files.append(path)
    return files


# -- validate ---------------------------------------------------------------------------


def validate_part(work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    trees = {
        "1000x1": lambda d: validate_bench.generate(d, 1000, 1),
        "1000x50": lambda d: validate_bench.generate(d, 1000, 50),
        f"{ARGS.count}x1": lambda d: spread(d, ARGS.count, validate_bench.manifest),
        "1x1": lambda d: validate_bench.generate(d, 1, 1),
    }
    for name, make in trees.items():
        directory = work / f"validate-{name}"
        directory.mkdir()
        make(directory)
        print(f"[validate {name}] ...", file=sys.stderr, flush=True)
        out[name] = paired(validate_cmd(directory), floor_cmd(directory), work, ARGS.runs)
        print("  " + json.dumps(out[name]), file=sys.stderr, flush=True)
    return out


# -- daemon -----------------------------------------------------------------------------


def atomic_write(path: Path, text: str) -> None:
    """As git does: a new file renamed over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def reloaded(rig: Any, before: int, within: float, **match: Any) -> dict[str, Any]:
    """The next `manifests.reloaded` (matching) after the first `before` of them."""
    return dict(rig.wait_event("manifests.reloaded", within=within, after=before, **match))


def count(rig: Any, **match: Any) -> int:
    return len(rig.log.named("manifests.reloaded", **match))


def relabel(text: str, tag: str) -> str:
    return text.replace("mode: mix\n", f"mode: mix\nlabels: {{bench-speed: '{tag}'}}\n", 1)


def daemon_tree(rig: Any) -> tuple[list[Path], Callable[[int], str]]:
    now = datetime.now(UTC)
    texts: dict[int, str] = {}

    def text(i: int) -> str:
        texts[i] = daemon_bench.idle_manifest(i, now)
        return texts[i]

    files = spread(rig.manifests, ARGS.count, text)
    return files, texts.__getitem__


def daemon_run(work: Path) -> dict[str, Any]:
    from orchestrator.manifest.loader import RACY_NS

    with daemon_bench.Rig(1, resync="10m") as rig:
        rig.watch_interval = "1s"
        files, text = daemon_tree(rig)
        time.sleep(RACY_NS / 1e9 + 0.2)  # a tree deployed a while ago
        floor = [run_once(floor_cmd(rig.manifests), work) for _ in range(3)]
        out: dict[str, Any] = {"load_start": os.getloadavg()[0]}
        out["floor_wall"] = [f["wall"] for f in floor]
        out["floor_docs"] = floor[-1]["last"]
        rig.start_emulator()
        started = rig.start_daemon(ready_within=240)
        pid = rig.daemon.pid
        out["first_ready_s"] = event_time(started["ready"]) - started["launched"]
        out["first_reload_ms"] = reloaded(rig, 0, 5, trigger="start")["duration_ms"]
        status = daemon_bench.proc_status(pid)
        out["rss_ready_mb"], out["hwm_ready_mb"] = status["VmRSS"] / 1024, status["VmHWM"] / 1024
        # SIGHUP, nothing changed
        before = count(rig, trigger="SIGHUP")
        rig.daemon.signal(signal.SIGHUP)
        event = reloaded(rig, before, 60, trigger="SIGHUP")
        out["sighup_ms"], out["sighup_files"] = event["duration_ms"], event["files_changed"]
        # a touch of every file, no content changed
        before = count(rig, trigger="watch")
        for path in files:
            os.utime(path)
        event = reloaded(rig, before, 120, trigger="watch")
        out["touch_ms"], out["touch_files"] = event["duration_ms"], event["files_changed"]
        time.sleep(RACY_NS / 1e9 + 0.2)  # the touched files out of the racy window
        # one file changed, `--edits` times (a different file each time)
        one = []
        for n in range(ARGS.edits):
            before = count(rig, trigger="watch")
            i = (n * 1237 + 11) % len(files)
            atomic_write(files[i], relabel(text(i), f"one-{n}"))
            one.append(reloaded(rig, before, 30, trigger="watch")["duration_ms"])
        out["one_ms"] = one
        time.sleep(RACY_NS / 1e9 + 0.2)
        # every file rewritten with a changed label, as a `git checkout`
        before = count(rig, trigger="watch")
        for i, path in enumerate(files):
            atomic_write(path, relabel(text(i), "all"))
        written = time.time()
        events, changed = [], 0
        while changed < len(files):
            event = reloaded(rig, before + len(events), 180, trigger="watch")
            events.append(event)
            changed += int(event["files_changed"])
        out["all_ms"] = sum(float(e["duration_ms"]) for e in events)
        out["all_reloads"] = len(events)
        out["all_after_write_s"] = event_time(events[-1]) - written
        status = daemon_bench.proc_status(pid)
        out["rss_after_all_mb"], out["hwm_mb"] = status["VmRSS"] / 1024, status["VmHWM"] / 1024
        out["stop_code"] = rig.stop_daemon(within=30)[0]
        # a restart, the files unchanged since the last reload, the store filled
        time.sleep(RACY_NS / 1e9 + 0.2)
        started = rig.start_daemon(ready_within=240, log="daemon-restart.log.json")
        out["restart_ready_s"] = event_time(started["ready"]) - started["launched"]
        event = reloaded(rig, 0, 5, trigger="start")
        out["restart_reload_ms"], out["restart_files"] = (
            event["duration_ms"],
            event["files_changed"],
        )
        status = daemon_bench.proc_status(rig.daemon.pid)
        out["restart_rss_mb"], out["restart_hwm_mb"] = (
            status["VmRSS"] / 1024,
            status["VmHWM"] / 1024,
        )
        out["restart_stop_code"] = rig.stop_daemon(within=30)[0]
        out["load_end"] = os.getloadavg()[0]
    return out


def daemon_part(work: Path) -> dict[str, Any]:
    runs = []
    for n in range(ARGS.daemon_runs):
        print(f"[daemon] run {n + 1}/{ARGS.daemon_runs} ...", file=sys.stderr, flush=True)
        runs.append(daemon_run(work))
        print("  " + json.dumps(runs[-1]), file=sys.stderr, flush=True)
    return {"runs": runs}


# -- profiles ---------------------------------------------------------------------------


def top_pstats(path: Path, key: str, limit: int = 25) -> str:
    buffer = io.StringIO()
    pstats.Stats(str(path), stream=buffer).strip_dirs().sort_stats(key).print_stats(limit)
    text = buffer.getvalue()
    return text[text.index("   ncalls") :].rstrip() if "   ncalls" in text else text


def importtime(directory: Path, work: Path) -> dict[str, Any]:
    done = subprocess.run(
        validate_cmd(directory, "-X", "importtime"),
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:") :].split("|", 2)
        rows.append((int(cumulative), int(own), name.rstrip()))
    top_level = [r for r in rows if not r[2].startswith("  ")]
    return {
        "total_ms": sum(r[1] for r in rows) / 1000,
        "modules": len(rows),
        "top_level": [(c / 1000, n.strip()) for c, _, n in sorted(top_level, reverse=True)[:15]],
        "by_cumulative": [(c / 1000, n) for c, _, n in sorted(rows, reverse=True)[:30]],
    }


def collapsed(path: Path) -> dict[str, int]:
    """py-spy's raw (collapsed) format: `frame;frame;... count` a line."""
    stacks: dict[str, int] = defaultdict(int)
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            stacks[stack] += int(number)
    return stacks


PLUMBING = ("<frozen ", "asyncio/", "threading.py", "concurrent/", "click/", "runpy", "anyio/")
"""Frames every stack passes through (the interpreter, the event loop, the CLI, thread
pools): left out of the inclusive table, which would otherwise show only them."""
WAITING = ("_worker (", "WorkerThread.run (", "EpollSelector.select (", "Thread.wait (")
"""Frames where an idle thread waits in C: py-spy's idle detection misses some of them."""


def tops(stacks: dict[str, int], limit: int = 25) -> dict[str, Any]:
    """Own and inclusive samples a function, from collapsed stacks (waits left out)."""
    own: dict[str, int] = defaultdict(int)
    inclusive: dict[str, int] = defaultdict(int)
    total = 0
    for stack, n in stacks.items():
        frames = stack.split(";")
        if frames[-1].startswith(WAITING):
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            if not any(part in frame for part in PLUMBING):
                inclusive[frame] += n
    best = sorted(own.items(), key=lambda kv: -kv[1])[:limit]
    wide = sorted(inclusive.items(), key=lambda kv: -kv[1])[:limit]
    return {"samples": total, "own": best, "inclusive": wide, "phases": phases(stacks)}


PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "gc: collections and freezes (GcPolicy)",
        ("GcPolicy.settle", "GcPolicy._settle", "GcPolicy.started", "GcPolicy.loading"),
    ),
    ("imports", ("_find_and_load",)),
    ("load: YAML parse, nodes, construct (fast_documents)", ("fast_documents",)),
    ("load: YAML events for the bounds check (fast_events)", ("fast_events",)),
    ("load: position finder (round-trip parse)", ("position_tree",)),
    ("load: pydantic validation (Manifest.model_validate)", ("parse_file", "model_validate")),
    ("load: rest of parse_file (bounds, secrets, warnings)", ("parse_file",)),
    ("load: cross-file checks (crosscheck)", ("manifest/crosscheck.py",)),
    ("load: discovery, stat, read, digest (ManifestCache)", ("ManifestCache",)),
    ("desired: fingerprints (requests -> JSON -> digest)", ("_fingerprints",)),
    ("desired: translation to typed requests", ("translate (orchestrator/reconcile/",)),
    ("desired: known-good documents (model_dump)", ("_document (",)),
    ("desired: rest (DesiredCache)", ("DesiredCache",)),
    ("store: known-good writes", ("remember_known_good",)),
    ("store: other", ("orchestrator/state/",)),
    ("first pass: overview of every recording", ("overview (orchestrator/reconcile/",)),
    ("passes: planning and the rest", ("orchestrator/daemon/passes.py",)),
    ("watch", ("orchestrator/daemon/watch.py",)),
    ("CLI (the validate report, the run command)", ("orchestrator/cli/",)),
)
"""Where a sample's time goes, by the first rule all of whose parts its stack holds."""


def phases(stacks: dict[str, int]) -> dict[str, int]:
    """Samples a phase (waits left out); the rest is `other`."""
    out: dict[str, int] = defaultdict(int)
    for stack, n in stacks.items():
        if stack.rpartition(";")[2].startswith(WAITING):
            continue
        name = next(
            (label for label, parts in PHASES if all(p in stack for p in parts)),
            "other (interpreter start, config, event loop, logging, ...)",
        )
        out[name] += n
    return dict(out)


def daemon_child(wrapper_pid: int) -> int | None:
    """The pid of the daemon py-spy started (its only child)."""
    for task in Path(f"/proc/{wrapper_pid}/task").iterdir():
        children = (task / "children").read_text().split()
        if children:
            return int(children[0])
    return None


def spied(rig: Any, name: str, then: Callable[[], None] | None = None) -> dict[str, int]:
    """The daemon started under py-spy until ready (then `then()`), stopped by its pid;
    the collapsed stacks py-spy wrote once it exited."""
    spy = Path(sys.executable).with_name("py-spy")
    output = rig.root / f"{name}.txt"
    config = rig.write_config()
    wrapper = [str(spy), "record", "--format", "raw", "--function", "-o", str(output), "--"]
    rig.daemon = rig.procs.daemon(
        config, notify=False, log=rig.root / f"{name}.log", wrapper=wrapper
    )
    rig.wait_event("daemon.ready", within=300)
    if then is not None:
        then()
    pid = daemon_child(rig.daemon.pid)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)  # the daemon, a child of the py-spy we started
    rig.daemon.child.exited_blocking(60)
    return collapsed(output)


def subtract(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b) if a.get(k, 0) > b.get(k, 0)}


def profile_part(work: Path, keep: Path | None) -> dict[str, Any]:
    from orchestrator.manifest.loader import RACY_NS

    out: dict[str, Any] = {}
    directory = work / "profile-1000x1"
    directory.mkdir()
    validate_bench.generate(directory, 1000, 1)
    prof = work / "validate.prof"
    print("[profile] cProfile of validate ...", file=sys.stderr, flush=True)
    run_once(validate_cmd(directory, "-m", "cProfile", "-o", str(prof)), work)
    out["cprofile_cumulative"] = top_pstats(prof, "cumulative")
    out["cprofile_tottime"] = top_pstats(prof, "tottime")
    out["importtime"] = importtime(directory, work)
    if keep is not None:
        shutil.copy(prof, keep / "validate-1000x1.prof")
    if not Path(sys.executable).with_name("py-spy").exists():
        out["py_spy"] = "not installed in the measured environment"
        return out
    spy = str(Path(sys.executable).with_name("py-spy"))
    for name, size in (("validate 1,000 one per file", 1000), ("validate 10,000", ARGS.count)):
        tree = work / f"spy-validate-{size}"
        tree.mkdir()
        spread(tree, size, validate_bench.manifest)
        output = work / f"spy-validate-{size}.txt"
        record = [spy, "record", "--format", "raw", "--function", "-o", str(output), "--"]
        run_once([*record, *validate_cmd(tree)], work)
        out.setdefault("py_spy_validate", {})[name] = tops(collapsed(output))
        if keep is not None:
            shutil.copy(output, keep / output.name)
    with daemon_bench.Rig(1, resync="10m") as rig:
        rig.watch_interval = "1s"
        files, text = daemon_tree(rig)
        time.sleep(RACY_NS / 1e9 + 0.2)
        rig.start_emulator()
        print("[profile] py-spy of the daemon: first start ...", file=sys.stderr, flush=True)
        first = spied(rig, "spy-first")
        time.sleep(RACY_NS / 1e9 + 0.2)
        print("[profile] py-spy: restart ...", file=sys.stderr, flush=True)
        restart = spied(rig, "spy-restart")
        time.sleep(RACY_NS / 1e9 + 0.2)

        def rewrite_all() -> None:
            before = count(rig, trigger="watch")
            for i, path in enumerate(files):
                atomic_write(path, relabel(text(i), "spy"))
            changed = 0
            while changed < len(files):
                event = reloaded(rig, before, 180, trigger="watch")
                before += 1
                changed += int(event["files_changed"])

        print("[profile] py-spy: restart + full reload ...", file=sys.stderr, flush=True)
        both = spied(rig, "spy-reload", rewrite_all)
        if keep is not None:
            for name in ("spy-first", "spy-restart", "spy-reload"):
                shutil.copy(rig.root / f"{name}.txt", keep / f"{name}.txt")
    out["py_spy"] = {
        "daemon first start (to ready)": tops(first),
        "daemon restart, files unchanged (to ready)": tops(restart),
        "daemon restart + full reload": tops(both),
        "full reload (restart + reload less restart)": tops(subtract(both, restart)),
    }
    # by phase, the difference of the two runs' totals (less noisy than stack by stack)
    whole, before = phases(both), phases(restart)
    reload = out["py_spy"]["full reload (restart + reload less restart)"]
    reload["phases"] = {
        k: whole[k] - before.get(k, 0) for k in whole if whole[k] > before.get(k, 0)
    }
    reload["samples"] = sum(reload["phases"].values())
    return out


# -- report -----------------------------------------------------------------------------


def cell(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "-"
    figures = stats(values)
    return (
        f"{fmt.format(figures['median'])} "
        f"({fmt.format(figures['min'])}-{fmt.format(figures['max'])})"
    )


def triple(figures: dict[str, float], fmt: str = "{:.2f}") -> str:
    return (
        f"{fmt.format(figures['median'])} "
        f"({fmt.format(figures['min'])}-{fmt.format(figures['max'])})"
    )


VALIDATE_TREES = {
    "1000x1": "1,000 manifests, one per file",
    "1000x50": "1,000 manifests, 50 per file",
    "10000x1": "10,000 manifests, one per file, 50 directories",
    "1x1": "1 manifest (fixed cost)",
}


def render_validate(part: dict[str, Any]) -> list[str]:
    lines = [
        "| tree | validate wall s | floor wall s | ratio (pairwise) | target |"
        " validate CPU s | floor CPU s | peak RSS MB validate / floor | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in part.items():
        target = "<= 2 x floor" if key.startswith("1000x") else "linear" if "x1" in key else ""
        if key == "1x1":
            target = "-"
        lines.append(
            f"| {VALIDATE_TREES.get(key, key)} | {triple(row['a_wall'])} | {triple(row['b_wall'])}"
            f" | **{triple(row['ratio_wall'])}** | {target} | {triple(row['a_cpu'])}"
            f" | {triple(row['b_cpu'])} | {row['a_rss']['median']:.0f} / "
            f"{row['b_rss']['median']:.0f} | {row['load']:.1f} |"
        )
    return lines


def render_daemon(part: dict[str, Any]) -> list[str]:
    runs = part["runs"]
    floors = [statistics.median(r["floor_wall"]) for r in runs]

    def column(key: str, scale: float = 1.0) -> list[float]:
        return [float(r[key]) * scale for r in runs]

    def ratio(key: str, scale: float = 1.0) -> str:
        values = [float(r[key]) * scale / f for r, f in zip(runs, floors, strict=True)]
        return f"**{cell(values)} x**"

    one = [x for r in runs for x in r["one_ms"]]
    loads = ", ".join(f"{r['load_start']:.1f}/{r['load_end']:.1f}" for r in runs)
    lines = [
        "| measure | target | measured (median, min-max over runs) | x floor |",
        "|---|---|---|---|",
        f"| floor: libyaml parse of the 10,000 files, whole process (s) | - |"
        f" {cell([x for r in runs for x in r['floor_wall']])} | 1 |",
        f"| first start (empty store): launch to `daemon.ready` (s) | <= 2 x floor |"
        f" {cell(column('first_ready_s'))} | {ratio('first_ready_s')} |",
        f"|   of which the start reload (`manifests.reloaded`, s) | - |"
        f" {cell(column('first_reload_ms', 1e-3))} | {ratio('first_reload_ms', 1e-3)} |",
        f"| restart, files unchanged, store filled: launch to ready (s) | <= 3 s |"
        f" {cell(column('restart_ready_s'))} | {ratio('restart_ready_s')} |",
        f"|   of which the start reload (s) | - |"
        f" {cell(column('restart_reload_ms', 1e-3))} | {ratio('restart_reload_ms', 1e-3)} |",
        f"| reload after every file changed (rewrite, watch; s) | <= 2 x floor |"
        f" {cell(column('all_ms', 1e-3))} | {ratio('all_ms', 1e-3)} |",
        f"|   last write to its `manifests.reloaded` (incl. 1 s debounce; s) | - |"
        f" {cell(column('all_after_write_s'))} | - |",
        f"| SIGHUP, nothing changed (ms) | <= 1 s | {cell(column('sighup_ms'), '{:.0f}')} | - |",
        f"| touch of every file, no content changed (watch; ms) | <= 1 s |"
        f" {cell(column('touch_ms'), '{:.0f}')} | - |",
        f"| one file changed (watch; ms; {len(one)} edits) | < 100 ms median |"
        f" {cell(one, '{:.1f}')} | - |",
        f"| VmRSS at ready, first start (MB) | - | {cell(column('rss_ready_mb'), '{:.0f}')} | - |",
        f"| VmHWM at ready, first start (MB) | < 200 MB |"
        f" {cell(column('hwm_ready_mb'), '{:.0f}')} | - |",
        f"| VmRSS after the full reload (MB) | < 200 MB |"
        f" {cell(column('rss_after_all_mb'), '{:.0f}')} | - |",
        f"| VmHWM after the full reload (MB) | < 200 MB | {cell(column('hwm_mb'), '{:.0f}')} | - |",
        f"| VmRSS at ready, restart (MB) | < 200 MB |"
        f" {cell(column('restart_rss_mb'), '{:.0f}')} | - |",
        f"| load average (1 min) at start / end of each run | - | {loads} | - |",
    ]
    return lines


def render_spy(name: str, top: dict[str, Any], limit: int = 20) -> list[str]:
    total = max(1, top["samples"])
    lines = [f"py-spy, {name}: {top['samples']} samples (100 Hz, idle waits left out)", ""]
    lines += ["| own samples | % | function |", "|---:|---:|---|"]
    lines += [f"| {n} | {100 * n / total:.1f} | `{f}` |" for f, n in top["own"][:limit]]
    lines += ["", "| inclusive samples | % | function |", "|---:|---:|---|"]
    lines += [f"| {n} | {100 * n / total:.1f} | `{f}` |" for f, n in top["inclusive"][:limit]]
    return [*lines, ""]


def render_phases(spies: dict[str, Any]) -> list[str]:
    """One row a phase, one column a py-spy profile: the phase's share of its samples."""
    if not spies:
        return []
    names = [label for label, _ in PHASES]
    names.append("other (interpreter start, config, event loop, logging, ...)")
    lines = [
        "Where the time goes (py-spy, share of the samples not waiting; seconds at 100 Hz):",
        "",
        "| phase | " + " | ".join(spies) + " |",
        "|---|" + "---:|" * len(spies),
    ]
    for name in names:
        cells = []
        for top in spies.values():
            n = top["phases"].get(name, 0)
            cells.append(
                f"{100 * n / max(1, top['samples']):.1f} % ({n / 100:.2f} s)" if n else "-"
            )
        if any(c != "-" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = " | ".join(f"{top['samples'] / 100:.2f} s" for top in spies.values())
    return [*lines, f"| all samples | {totals} |", ""]


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m['date']}: commit `{m['commit'][:10]}` ({m['repo']}), {m['nproc']} CPUs"
        f" ({m['cpu']}), Python {m['python']}; load average at the start"
        f" {', '.join(f'{x:.2f}' for x in m['loadavg'])}.",
        "",
    ]
    if "validate" in results:
        lines += ["### validate", "", *render_validate(results["validate"]), ""]
    if "daemon" in results:
        lines += ["### daemon, 10,000 manifests", "", *render_daemon(results["daemon"]), ""]
    profile = results.get("profile")
    if profile:
        imports = profile["importtime"]
        lines += ["### profiles", "", "cProfile of `validate`, 1,000 one per file, by cumulative:"]
        lines += ["", "```", profile["cprofile_cumulative"], "```", "", "by own time:", ""]
        lines += ["```", profile["cprofile_tottime"], "```", ""]
        lines += [
            f"`-X importtime`: {imports['modules']} modules, {imports['total_ms']:.0f} ms; "
            "top by cumulative ms:",
            "",
            "```",
            *[f"{ms:8.1f}  {name}" for ms, name in imports["by_cumulative"]],
            "```",
            "",
        ]
        spies = {**profile.get("py_spy_validate", {})}
        if isinstance(profile.get("py_spy"), dict):
            spies.update(profile["py_spy"])
        lines += render_phases(spies)
        spy = profile.get("py_spy")
        for name, top in profile.get("py_spy_validate", {}).items():
            lines += render_spy(name, top)
        if isinstance(spy, dict):
            for name, top in spy.items():
                lines += render_spy(name, top)
        elif spy:
            lines += [f"py-spy: {spy}", ""]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """daemon_bench's facts of the machine, and the commit measured."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {**daemon_bench.machine(), "commit": commit, "repo": str(REPO)}


def main() -> None:
    if ARGS.from_json is not None:
        print(render(json.loads(ARGS.from_json.read_text(encoding="utf-8"))))
        return
    if not ARGS.floor_python:
        raise SystemExit("--floor-python: an interpreter with PyYAML (libyaml) is needed")
    # As an installed package runs: from its compiled bytecode. With
    # PYTHONDONTWRITEBYTECODE set (as in some shells here) and no __pycache__ in the
    # checkout, every run would compile the project's modules again (~0.1 s a process).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "orchestrator")], check=True
    )
    work = Path(tempfile.mkdtemp(prefix="speed-bench-"))
    keep = ARGS.out
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine()}
    try:
        parts = {"validate": validate_part, "daemon": daemon_part}
        for name in ARGS.only:
            if name == "profile":
                results["profile"] = profile_part(work, keep)
            else:
                results[name] = parts[name](work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(results, indent=1, default=str)
    if keep is not None:
        (keep / "speed.json").write_text(text, encoding="utf-8")
        (keep / "speed.md").write_text(render(results), encoding="utf-8")
    print(render(results))


if __name__ == "__main__":
    main()
