"""The monitoring that ships in packaging/: Prometheus alert rules and a Grafana dashboard.

Covers:
- the rules pass `promtool check rules`; `promtool test rules` passes the unit tests of
  orchestrator-alerts.test.yml, which hold a case where each alert fires; a rule made
  unable to fire fails them (so no alert's tests are vacuous);
- every alert has a severity, a summary and a description that points to the docs,
  and docs/monitoring.md explains it under a heading of its name;
- the dashboard is a Grafana model that imports as it is: uid, title, schemaVersion,
  a `datasource` variable (type datasource, Prometheus) that every panel, query and
  query variable uses (no data source uid is written in), unique panel ids, panels on
  the 24-column grid without overlapping; every variable a query uses is defined, and
  every query is valid PromQL (`promtool check rules` on them as recording rules);
- against `orchestrator run` as a process (the emulator, a live recording, the
  notification receiver with one refused request): every metric the rules and the
  dashboard's queries name is on its /metrics with samples, and every label a query
  matches on is one of that series' labels (or `job`/`instance`, which Prometheus adds).

promtool comes with Debian's `prometheus` package. Without it the tests that run it
are skipped, saying why; with ORCHESTRATOR_REQUIRE_TOOLS=1 (CI) they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from tests.e2e.conftest import DaemonEnv
from tests.e2e.test_apply_cli import write_manifest
from tests.harness import WaitTimeout, wait_until

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "packaging" / "prometheus" / "orchestrator-alerts.yml"
RULE_TESTS = ROOT / "packaging" / "prometheus" / "orchestrator-alerts.test.yml"
DASHBOARD = ROOT / "packaging" / "grafana" / "orchestrator-dashboard.json"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"

REQUIRE_FLAG = "ORCHESTRATOR_REQUIRE_TOOLS"
PROMTOOL_TIMEOUT = 60.0  # seconds; each run takes well under one

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SEVERITIES = {"critical", "warning"}
#: Labels Prometheus itself adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
#: Prometheus's own series a rule or panel may use; not the daemon's to export.
PROMETHEUS_SERIES = {"up"}
#: What Grafana puts in for its built-in variables when a query runs.
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}

_METRIC = re.compile(r"\b(orchestrator_[a-z0-9_]+|up)\b(?!\s*\()")
_SELECTOR = re.compile(r"\b(orchestrator_[a-z0-9_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")

SAFE_YAML = YAML(typ="safe", pure=True)


# -- the files ------------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    """Every alerting rule of the rules file."""
    document = SAFE_YAML.load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside a collapsed row too."""
    for panel in model["panels"]:
        yield panel
        yield from panel.get("panels", [])


def variables(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in model["templating"]["list"]}


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return str(query["query"] if isinstance(query, dict) else query)


def dashboard_queries(model: dict[str, Any]) -> list[str]:
    """The PromQL of every panel target and annotation (not the variables' queries)."""
    queries = [t["expr"] for p in panels(model) for t in p.get("targets", [])]
    queries += [a["expr"] for a in model["annotations"]["list"] if "expr" in a]
    return queries


def metric_names(expression: str) -> set[str]:
    """The series an expression reads: `orchestrator_*` identifiers and `up` (a
    function's name is followed by a parenthesis, a series' never is)."""
    return set(_METRIC.findall(_QUOTED.sub('""', expression)))


def matched_labels(expression: str) -> dict[str, set[str]]:
    """Series name -> the labels its selectors match on (`name{label="..."}`)."""
    found: dict[str, set[str]] = {}
    for name, body in _SELECTOR.findall(expression):
        found.setdefault(name, set()).update(_MATCHER.findall(_QUOTED.sub('""', body)))
    return found


def every_query() -> list[tuple[str, str]]:
    """(where, PromQL-ish text) of the rules, the dashboard's queries and its variables."""
    model = dashboard()
    out = [(f"rule {r['alert']}", str(r["expr"])) for r in rules()]
    out += [(f"dashboard query {q!r}", q) for q in dashboard_queries(model)]
    out += [
        (f"dashboard variable {name}", variable_query(v))
        for name, v in variables(model).items()
        if v["type"] == "query"
    ]
    return out


# -- promtool --------------------------------------------------------------------------


def promtool() -> str:
    """promtool's path; skips the test without it (fails it under REQUIRE_FLAG=1)."""
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not on PATH (Debian: apt-get install prometheus)"
        if os.environ.get(REQUIRE_FLAG) == "1":
            pytest.fail(f"{reason} (and {REQUIRE_FLAG}=1)", pytrace=False)
        pytest.skip(reason)
    return found


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
    )


def test_the_rules_pass_promtool_check() -> None:
    checked = run_promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    tested = run_promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_each_alert_has_a_case_where_it_fires() -> None:
    document = SAFE_YAML.load(RULE_TESTS.read_text(encoding="utf-8"))
    assert document["rule_files"] == [RULES.name]
    firing = {
        check["alertname"]
        for case in document["tests"]
        for check in case.get("alert_rule_test", [])
        if check.get("exp_alerts")
    }
    assert sorted(r["alert"] for r in rules() if r["alert"] not in firing) == []
    assert firing <= {r["alert"] for r in rules()}  # no test of an alert that is gone


@pytest.mark.parametrize("alert", [r["alert"] for r in rules()])
def test_a_rule_that_cannot_fire_fails_its_unit_tests(alert: str, tmp_path: Path) -> None:
    """The unit tests really look at each rule: one that never fires fails them."""
    document = SAFE_YAML.load(RULES.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = "vector(1) == 0"
    # JSON is YAML: promtool reads the changed copy beside the unchanged tests.
    (tmp_path / RULES.name).write_text(json.dumps(document), encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tested = run_promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert tested.returncode != 0, tested.stdout
    assert f"alertname: {alert}," in tested.stdout + tested.stderr


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query, with the values Grafana would put in for its variables, checked by
    promtool as the expression of a recording rule."""
    model = dashboard()
    values = dict(GRAFANA_BUILTINS)
    for name, variable in variables(model).items():
        # A query variable sits in a regex matcher (multi-value, "All" is .*); a
        # textbox's default is the value it stands for.
        values[name] = ".*" if variable["type"] == "query" else variable_query(variable)
    recorded = []
    for number, query in enumerate(dashboard_queries(model)):
        unknown = {v for v in _VARIABLE.findall(query) if v not in values}
        assert unknown == set(), f"{query!r} uses undefined variables {sorted(unknown)}"
        expression = _VARIABLE.sub(lambda m: values[m.group(1)], query)
        recorded.append({"record": f"dashboard:query_{number}", "expr": expression})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(
        json.dumps({"groups": [{"name": "dashboard", "rules": recorded}]}), encoding="utf-8"
    )
    checked = run_promtool("check", "rules", path.name, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(recorded)} rules found" in checked.stdout


# -- what the files say --------------------------------------------------------------


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_each_alert_says_what_it_means_and_what_to_do(rule: dict[str, Any]) -> None:
    assert rule["alert"].startswith("Orchestrator")
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) >= {"summary", "description"}
    assert 0 < len(annotations["summary"]) <= 120
    assert "docs/monitoring.md" in annotations["description"] or (
        "docs/replicas.md" in annotations["description"]
    )
    doc = MONITORING_DOC.read_text(encoding="utf-8")
    assert re.search(rf"^#+ .*`{rule['alert']}`", doc, re.MULTILINE), (
        f"docs/monitoring.md has no heading for {rule['alert']}"
    )


def test_the_daemon_down_rules_name_the_documented_scrape_job() -> None:
    ups = [r for r in rules() if "up" in metric_names(str(r["expr"]))]
    assert {r["alert"] for r in ups} == {"OrchestratorDown", "OrchestratorTargetMissing"}
    for rule in ups:
        assert 'up{job="orchestrator"}' in rule["expr"]
    assert 'job_name: "orchestrator"' in MONITORING_DOC.read_text(encoding="utf-8")


def test_the_dashboard_is_an_importable_model() -> None:
    model = dashboard()
    assert model["uid"] and len(model["uid"]) <= 40
    assert model["title"]
    assert model["schemaVersion"] >= 39
    assert model["id"] is None  # Grafana gives it one on import

    found = variables(model)
    assert found["datasource"]["type"] == "datasource"
    assert found["datasource"]["query"] == "prometheus"
    assert found["datasource"]["current"] == {}  # the importer's default data source
    for name in ("job", "instance", "app_id"):
        assert found[name]["type"] == "query"
        assert found[name]["datasource"] == DATASOURCE, name

    ids = [p["id"] for p in panels(model)]
    assert len(ids) == len(set(ids))
    drawn = [p for p in panels(model) if p["type"] != "row"]
    assert len(drawn) >= 20
    for panel in drawn:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
    for annotation in model["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"] == DATASOURCE, annotation["name"]


def test_no_data_source_is_written_into_the_dashboard() -> None:
    """Every data source reference is the variable (or Grafana's built-in annotations)."""

    def references(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource":
                    yield value
                else:
                    yield from references(value)
        elif isinstance(node, list):
            for item in node:
                yield from references(item)

    builtin = {"type": "grafana", "uid": "-- Grafana --"}
    model = dashboard()
    assert all(r in (DATASOURCE, builtin) for r in references(model))
    assert "__inputs" not in model  # nothing for the importer to ask but the variable


def test_the_dashboard_panels_tile_the_grid() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_the_dashboard_draws_what_the_operator_asks_about() -> None:
    drawn = set().union(*(metric_names(q) for q in dashboard_queries(dashboard())))
    assert drawn >= {
        "orchestrator_recordings_wanted",
        "orchestrator_recordings_live",
        "orchestrator_recordings_not_recording",
        "orchestrator_reconcile_actions_total",
        "orchestrator_api_latency_seconds_bucket",
        "orchestrator_api_requests_total",
        "orchestrator_rate_limit_wait_seconds_bucket",
        "orchestrator_boundary_lateness_seconds_bucket",
        "orchestrator_manifests_held",
        "orchestrator_reloads_total",
        "orchestrator_owned_app_ids",
        "orchestrator_app_ids_unowned",
        "orchestrator_notifications_total",
        "orchestrator_query_cycle_seconds",
    }


# -- against the daemon --------------------------------------------------------------


@dataclass
class Exposition:
    """A scrape of /metrics: series names with samples, and each one's labels."""

    labels: dict[str, set[str]] = field(default_factory=dict)
    declared: set[str] = field(default_factory=set)  # families, samples or not

    @classmethod
    def parse(cls, text: str) -> Exposition:
        out = cls()
        for family in text_string_to_metric_families(text):
            out.declared.add(family.name)
            for sample in family.samples:
                out.labels.setdefault(sample.name, set()).update(sample.labels)
        return out


async def scrape(url: str) -> Exposition:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        answer = await http.get(f"{url}/metrics")
    answer.raise_for_status()
    return Exposition.parse(answer.text)


SECRET_VARIABLE = "NCS_SECRET"


@pytest.mark.slow
async def test_every_metric_used_is_on_a_running_daemon(daemon_env: DaemonEnv) -> None:
    queries = every_query()
    used: dict[str, set[str]] = {}  # series -> where it is used
    for where, query in queries:
        for name in metric_names(query) - PROMETHEUS_SERIES:
            used.setdefault(name, set()).add(where)
    assert len(used) >= 25, sorted(used)  # the extraction found the queries' series

    # A recording to make the per-App-ID series, and the receiver for the notifications'.
    daemon_env.cli.env[SECRET_VARIABLE] = "monitoring-e2e-secret"
    daemon_env.reconfigure(
        {"notifications": {"address": "127.0.0.1:0", "secret": {"env": SECRET_VARIABLE}}}
    )
    write_manifest(daemon_env.cli, "beta", "room-b", 102)
    daemon = await daemon_env.start()
    try:
        url = await daemon.metrics_url()
        receiver = await daemon.wait_event("notifications.listening", within=30)
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            refused = await http.post(
                f"http://{receiver['address']}{receiver['path']}", content=b"{}"
            )
        assert refused.status_code == 401  # unsigned: counted as bad_signature

        async def complete() -> Exposition | None:
            exposition = await scrape(url)
            return exposition if used.keys() <= exposition.labels.keys() else None

        try:
            # Some series appear with their first event (a resync's query cycle).
            exposition = await wait_until(
                complete, within=30, every=0.5, what="every series used", alive=daemon
            )
        except WaitTimeout:
            exposition = await scrape(url)
    finally:
        assert await daemon.stop() == 0

    missing = [
        f"{name} ({_why_missing(name, exposition)}), used by {sorted(where)}"
        for name, where in sorted(used.items())
        if name not in exposition.labels
    ]
    assert missing == []

    unknown_labels = []
    for where, query in queries:
        for name, matched in matched_labels(query).items():
            extra = matched - TARGET_LABELS - exposition.labels[name]
            if extra:
                unknown_labels.append(f"{where}: {name} has no label {sorted(extra)}")
    assert unknown_labels == []


def _why_missing(series: str, exposition: Exposition) -> str:
    """Whether the daemon declares the family of `series` (a counter's `_total`, a
    histogram's `_bucket`, `_sum` and `_count` belong to the name without it)."""
    family = series
    for suffix in ("_total", "_bucket", "_sum", "_count"):
        if series.endswith(suffix):
            family = series.removesuffix(suffix)
            break
    if family in exposition.declared:
        return "declared without a sample: no event yet, or a suffix its type does not have"
    return "not exported"
