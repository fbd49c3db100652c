"""A daemon config with mistakes, read by `orchestrator plan --offline` as a process.

Covers: a mistyped key in an otherwise working config ends the command with exit 1,
no traceback, nothing on stdout and one positioned line naming the closest valid
key; several mistakes are all reported, each on its own line, in file order.
"""

from __future__ import annotations

import io

import pytest
from ruamel.yaml import YAML

from tests.e2e.conftest import CliEnv

pytestmark = pytest.mark.e2e

RECONCILE_KEYS = (
    "resyncInterval, concurrency, stopOnShutdown, restartBackoff, rolloverLead, queryShare, "
    "failoverGrace"
)


def as_yaml(env: CliEnv) -> list[str]:
    """The fixture's config written again as YAML in block style, as people write it
    (the fixture writes JSON); its lines."""
    yaml = YAML()
    yaml.default_flow_style = False
    text = io.StringIO()
    yaml.dump(env.data, text)
    env.config.write_text(text.getvalue(), encoding="utf-8")
    return text.getvalue().splitlines()


def insert_before(env: CliEnv, anchor: str, line: str) -> int:
    """Write `line` into the fixture's config before the line starting with `anchor`;
    its line number (1-based)."""
    lines = env.config.read_text(encoding="utf-8").splitlines()
    index = next(i for i, text in enumerate(lines) if text.startswith(anchor))
    lines.insert(index, line)
    env.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return index + 1


async def test_a_mistyped_key_is_one_positioned_did_you_mean_line(cli_env: CliEnv) -> None:
    as_yaml(cli_env)
    line = insert_before(cli_env, "  restartBackoff:", "  concurency: 4")

    result = await cli_env.run("plan", "--offline", "--config", str(cli_env.config))

    assert result.code == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"error: {cli_env.config}:{line}:3: reconcile.concurency: unknown key 'concurency' "
        f"(did you mean 'concurrency'?); valid keys here: {RECONCILE_KEYS}\n"
    )


async def test_every_mistake_is_reported_on_its_own_line(cli_env: CliEnv) -> None:
    lines = as_yaml(cli_env)
    format_line = next(i for i, t in enumerate(lines) if t == "  format: json") + 1
    lines[format_line - 1] = "  format: jsno"
    cli_env.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    format_column = lines[format_line - 1].index("jsno") + 1
    key_line = insert_before(cli_env, "  restartBackoff:", "  concurency: 4")

    result = await cli_env.run("plan", "--offline", "--config", str(cli_env.config))

    assert result.code == 1
    assert "Traceback" not in result.stderr
    # One `error:` line per problem, in file order.
    assert result.stderr.splitlines() == [
        f"error: {cli_env.config}:{format_line}:{format_column}: logging.format: "
        "must be one of auto, json, console; did you mean 'json'?",
        f"error: {cli_env.config}:{key_line}:3: reconcile.concurency: unknown key 'concurency' "
        f"(did you mean 'concurrency'?); valid keys here: {RECONCILE_KEYS}",
    ]
