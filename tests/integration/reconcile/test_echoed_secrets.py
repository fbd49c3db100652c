"""Secrets a server echoes in another form reach no log line, store, message or output.

Real passes against the emulator, whose `answer` fault sends a body of our choosing:
a 401 on acquire echoing the base64 of `customerId:customerSecret` (bare, after
`Basic `, unpadded, percent-encoded), and a 400 (code 2) on start echoing the storage
secret JSON-escaped (with and without `ensure_ascii`, with `\\/`) and URL-encoded
(`quote`, `quote_plus`). Nothing of either may show in the JSON log lines, in the
actions' messages, in the bytes of the SQLite files (database, WAL), or in what
`orchestrator status --format json` and `orchestrator plan --offline --format json`
print;
each masked reason shows where it was.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import structlog

from orchestrator.logging import configure_logging
from orchestrator.reconcile.plan import PlanPolicy
from tests.harness.processes import child_env, run_cli
from tests.integration.reconcile.conftest import World, manifest

pytestmark = pytest.mark.integration

#: `/`, `"`, non-ASCII, `+` and a space: each form a serializer or a URL writes differs.
#: Every form keeps the marker `zzQx`, which nothing else in the test contains.
STORAGE_SECRET = 'zzQx/Stor"Sécret+9 x'
MARKER = "zzQx"


def _pair_forms(world: World) -> list[str]:
    pair = f"{world.emulator.customer_id}:{world.emulator.customer_secret}".encode()
    standard = base64.b64encode(pair).decode()
    urlsafe = base64.urlsafe_b64encode(pair).decode()
    return [standard, standard.rstrip("="), urlsafe.rstrip("="), quote(standard, safe="")]


def _config(world: World) -> Path:
    """The world's config as a file, for the CLI's readers."""
    app = world.runtime.config.apps["main"]
    data = {
        "apps": {
            "main": {
                "appId": app.app_id,
                "customerId": {"file": str(world.root / "customer-id")},
                "customerSecret": {"file": str(world.root / "customer-secret")},
                "baseUrl": world.emulator.base_url,
            }
        },
        "state": {"url": f"sqlite:///{world.root}/state.db"},
        "manifests": {"dir": str(world.manifests)},
        "logging": {"format": "json"},
    }
    path = world.root / "config.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _strings(value: object) -> list[str]:
    """Every string in a parsed JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _assert_clean(where: str, text: str, pair_forms: list[str]) -> None:
    assert MARKER not in text, f"the storage secret leaked into {where}"
    for form in pair_forms:
        assert form not in text, f"the credential pair leaked into {where}"


async def test_echoed_secrets_are_nowhere(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("S3_SECRET", STORAGE_SECRET)  # what {env: S3_SECRET} resolves to
    world.policy = PlanPolicy(restart_backoff_initial=timedelta(hours=1))
    pair_forms = _pair_forms(world)
    emu = world.emulator.emu
    configure_logging("info", json=True)
    try:
        # Pass 1: acquire answered 401, the credential pair echoed four ways.
        world.write("a.yaml", manifest("alpha", "room-a", 101))
        standard, bare, urlsafe, quoted = pair_forms
        emu.fail_next(
            "acquire",
            "answer",
            status=401,
            body=f"401 Unauthorized: Basic {standard}, decoded from {bare} ({urlsafe}, {quoted})",
            content_type="text/plain",
        )
        first = await world.apply()
        # Pass 2: start answered 400, code 2, the storage secret echoed five ways.
        world.write("b.yaml", manifest("beta", "room-b", 102))
        echoed = [
            json.dumps(STORAGE_SECRET)[1:-1],
            json.dumps(STORAGE_SECRET, ensure_ascii=False)[1:-1],
            json.dumps(STORAGE_SECRET)[1:-1].replace("/", "\\/"),
            quote(STORAGE_SECRET, safe=""),
            quote_plus(STORAGE_SECRET),
        ]
        reason = "invalid storage credential: " + " | ".join(echoed)
        emu.fail_next(
            "start",
            "answer",
            status=400,
            body=json.dumps({"code": 2, "reason": reason}),
            content_type="application/json",
        )
        second = await world.apply()
    finally:
        structlog.reset_defaults()

    # Both answers were given and acted on: the leaks had every chance to happen.
    assert [r["status"] for r in emu.requests("acquire")] == [401, 200]
    assert [r["status"] for r in emu.requests("start")] == [400]
    failures = {r.action.manifest: r.message for r in (*first.results, *second.results)}
    assert set(failures) == {"alpha", "beta"} and "***" in failures["beta"]
    for name, message in failures.items():
        _assert_clean(f"the message of {name}'s action", message, pair_forms)

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert any(e.get("error") == "AppError" for e in lines)  # the 401 was logged
    for entry in lines:
        _assert_clean(f"the log line {entry['event']}", "\n".join(_strings(entry)), pair_forms)

    states = await world.store.manifest_states()
    assert "***" in (states["beta"].failure_reason or "")
    ended = {s.manifest: s for s in await world.store.history()}
    assert "***" in (ended["alpha"].end_reason or "") and "***" in (ended["beta"].end_reason or "")
    for path in sorted(world.root.glob("state.db*")):
        data = path.read_bytes()
        assert MARKER.encode() not in data, f"the storage secret is in {path.name}"
        for form in pair_forms:
            assert form.encode() not in data, f"the credential pair is in {path.name}"

    config = _config(world)
    # `plan --offline` reads the store without its writer's lock, as `status` does.
    for command in (["status"], ["plan", "--offline"]):
        shown = await run_cli(
            [*command, "--config", str(config), "--format", "json"],
            env=child_env(),
            cwd=world.root,
        )
        assert shown.code in (0, 1, 2), shown.stderr[-500:]
        _assert_clean(f"`{command} --format json`", shown.stdout + shown.stderr, pair_forms)
        assert "***" in shown.stdout, shown.stdout[-2000:]  # the masked reasons are shown
