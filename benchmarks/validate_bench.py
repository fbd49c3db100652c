"""Benchmark: `orchestrator validate` as a whole process on 1,000 and 10,000 manifests.

Generates varied, valid manifests (mix and individual, custom/adaptive/vertical
layouts, snapshots, aliyun VOD, S3/OSS/COS/KS3/Qiniu storage with regions by
name and by number, cron/windows/always schedules, subscribe and unsubscribe
lists, `auto` uids) into a temporary directory, `--per-file` documents per file
(50 by default; 1 for one file per manifest), then times
`python -m orchestrator validate DIR` with wall clock, best of `--repeat` runs.

Targets on a 2-core machine: 1,000 manifests <= 1.5 s, 10,000 <= 10 s.

    .venv/bin/python benchmarks/validate_bench.py [--sizes 1000 10000] [--per-file 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {1000: 1.5, 10000: 10.0}

VENDORS = [
    ("aws-s3", "us-east-1"),
    ("aws-s3", 7),
    ("aliyun-oss", "CN_Hangzhou"),
    ("tencent-cos", "ap-guangzhou"),
    ("kingsoft-ks3", 3),
    ("qiniu", "Huadong"),
]
ZONES = ["UTC", "Europe/Berlin", "Asia/Shanghai", "America/New_York", "Australia/Sydney"]


def _schedule(i: int) -> str:
    kind = i % 4
    if kind == 0:
        zone = ZONES[i % len(ZONES)]
        return (
            f'schedule:\n  cron: "{i % 60} {i % 24} * * MON-FRI"\n'
            f"  timezone: {zone}\n  duration: {15 + i % 90}m\n"
        )
    if kind == 1:
        day = 1 + i % 28
        return (
            "schedule:\n  windows:\n"
            f"    - start: 2027-02-{day:02d}T09:00:00+01:00\n"
            f"      end: 2027-02-{day:02d}T10:30:00+01:00\n"
            f"    - start: 2027-03-{day:02d}T09:00:00Z\n"
            f"      end: 2027-03-{day:02d}T11:00:00Z\n"
        )
    if kind == 2:
        return "schedule: always\n"
    return f'schedule:\n  cron: "0 {i % 24} 1 * *"\n  timezone: UTC\n  duration: 2h\n'


def _storage(i: int) -> str:
    vendor, region = VENDORS[i % len(VENDORS)]
    return (
        f"storage:\n  vendor: {vendor}\n  region: {region}\n  bucket: bucket-{i % 17}\n"
        "  accessKey: {env: STORAGE_AK}\n  secretKey: {credential: storage-sk}\n"
        f"  fileNamePrefix: [rec, team{i % 9}]\n"
    )


def manifest(i: int) -> str:
    head = (
        f"# manifest {i}\nname: rec-{i}\napp: {'main' if i % 3 else 'backup'}\n"
        f"channel: channel-{i}\nuid: {'auto' if i % 5 == 0 else 100000 + i}\n"
        f"labels: {{team: t{i % 7}, tier: gold}}\n"
    ) + _schedule(i)
    variant = i % 5
    # what `always` cannot honour (validate warns about it) only with a window schedule
    always = i % 4 == 2
    deadline = "" if always else "startingDeadline: 5m\n"
    policy = "" if always else "updatePolicy: defer\n"
    if variant == 0:  # mix, custom layout, S3-like storage
        regions = "".join(
            f"    - {{uid: {1000 + r}, x: {r * 0.25}, y: 0.0, width: 0.25, height: 0.5, "
            f"renderMode: {'fit' if r % 2 else 'crop'}}}\n"
            for r in range(4)
        )
        body = (
            f"mode: mix\n{deadline}token: {{env: AGORA_TOKEN}}\n"
            "recording:\n  channelType: live\n  streams: audio+video\n  audioProfile: 1\n"
            "  maxIdleTime: 2m\n  subscribe:\n    audio: [1000, 1001, 1002, 1003]\n"
            "    video: [1000, 1001, 1002, 1003]\n"
            "transcoding: {width: 1280, height: 720, fps: 15, bitrate: 1130}\n"
            f'layout:\n  type: custom\n  background: "#10{i % 100:02d}FF"\n  regions:\n{regions}'
            "recordingFiles: {fileTypes: [hls]}\n" + _storage(i)
        )
    elif variant == 1:  # individual with subscribe lists
        body = (
            f"mode: individual\n{policy}recording:\n  streams: audio+video\n"
            "  decryption: {mode: aes-128-xts, secret: {file: /etc/keys/channel.key}}\n"
            f"  subscribe:\n    audio: [{i % 50 + 1}, {i % 50 + 2}, {i % 50 + 3}]\n"
            f"    video: [{i % 50 + 1}, {i % 50 + 2}]\n"
            "recordingFiles: {}\n" + _storage(i)
        )
    elif variant == 2:  # snapshots
        body = (
            "mode: individual\nrecording:\n  streams: video\n  subscribeUidGroup: 3-7\n"
            f"  unsubscribe:\n    video: [{i % 100 + 1}]\n"
            f"snapshots: {{interval: {5 + i % 3000}, fileTypes: [jpg]}}\n" + _storage(i)
        )
    elif variant == 3:  # aliyun VOD
        body = (
            "mode: mix\nresourceExpiredHour: 48\nlayout: {type: adaptive}\n"
            "transcoding: {width: 640, height: 360, fps: 15, bitrate: 400}\n"
            "aliyunVod:\n  accessKey: {env: VOD_AK}\n  secretKey: {env: VOD_SK}\n"
            f"  regionId: cn-shanghai\n  videoData:\n    title: Recording {i}\n"
            "    description: nightly\n    cateId: 1000\n"
        )
    else:  # vertical layout, unsubscribe lists, suspended
        body = (
            f"mode: mix\nsuspend: {'true' if i % 2 else 'false'}\n"
            "recording:\n  maxIdleTime: 300\n  unsubscribe:\n    audio: [666]\n    video: [666]\n"
            f"layout: {{type: vertical, maxResolutionUid: {5000 + i % 10}}}\n"
            "recordingFiles: {}\n" + _storage(i)
        )
    return head + body


def generate(directory: Path, count: int, per_file: int) -> int:
    files = 0
    for start in range(0, count, per_file):
        docs = [manifest(i) for i in range(start, min(start + per_file, count))]
        sub = directory / f"group-{start // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"m-{start:06d}.yaml").write_text("---\n".join(docs), encoding="utf-8")
        files += 1
    return files


def time_validate(directory: Path, repeat: int) -> tuple[float, str]:
    best = float("inf")
    last = ""
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", "validate", str(directory)],
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"validate failed ({done.returncode}):\n{done.stdout[-2000:]}")
        best = min(best, elapsed)
        last = done.stdout.strip().splitlines()[-1]
    return best, last


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--per-file", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}; {args.per_file} manifest(s) per file; best of {args.repeat}")
    failed = False
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="validate-bench-") as tmp:
            files = generate(Path(tmp), size, args.per_file)
            seconds, summary = time_validate(Path(tmp), args.repeat)
        target = TARGETS.get(size)
        verdict = "" if target is None else (" ok" if seconds <= target else " SLOW")
        failed |= target is not None and seconds > target
        print(
            f"{size:>6} manifests in {files:>5} files: {seconds:6.2f} s"
            f"{f' (target {target} s)' if target else ''}{verdict}  [{summary}]"
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
