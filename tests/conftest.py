"""Markers that say what a test needs, applied at collection (see the marker
descriptions in pyproject.toml and "Running the tests" in README.md).

- By directory: tests/integration -> `integration`; tests/e2e -> `e2e`;
  tests/replicas -> `e2e` and `postgres`; tests/reliability -> `reliability`, `e2e`
  and `slow`.
- By fixture: a test that uses a PostgreSQL fixture of tests/postgres.py (directly
  or through another fixture) -> `postgres`.
- By name, for tests whose files carry no such mark themselves (`BY_TEST`): the CLI
  run as a child process -> `e2e`; measured above about 2 s -> `slow`.

A fixture reached only through `request.getfixturevalue(...)` is invisible here: such
a test (or parameter, as in tests/contract/test_store_contract.py) carries its mark
itself; `postgres_url` fails a test that reaches it without the `postgres` mark.

The order of the run: longest first. `make test` runs the suite on several
pytest-xdist workers (`--dist loadscope`: a module at a time, in collection order),
so a long module collected last would run alone at the end. Modules are sorted
(stably) by the sum of `expected_seconds` of their tests: the measured length of
the longest tests (`LONGEST`), else a guess from the markers; within a module the
order stays the file's. The sort is deterministic: every worker must collect the
same order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.postgres"]

TESTS = Path(__file__).resolve().parent

#: The first directory under tests/ -> the markers its tests get.
BY_DIRECTORY: dict[str, tuple[str, ...]] = {
    "integration": ("integration",),
    "e2e": ("e2e",),
    "replicas": ("e2e", "postgres"),
    "reliability": ("reliability", "e2e", "slow"),
}

#: Fixtures of tests/postgres.py that start (or need) the throwaway cluster.
POSTGRES_FIXTURES = frozenset({"postgres_cluster", "postgres_url"})

#: (file under tests/, test function) -> markers, for tests whose need shows neither
#: in their directory nor in their fixtures and whose files do not mark them.
BY_TEST: dict[tuple[str, str], tuple[str, ...]] = {
    # `orchestrator plan` run as a process (`_cli`)
    ("unit/test_config.py", "test_alias_bomb_is_refused_in_bounded_time"): ("e2e",),
    ("unit/test_config.py", "test_no_config_error_quotes_a_secret"): ("e2e",),
    # measured above about 2 s
    ("unit/manifest/test_manifest_cache.py", "test_the_memo_answers_as_a_fresh_search"): ("slow",),
    ("unit/manifest/test_manifest_properties.py", "test_mutated_documents"): ("slow",),
    ("unit/manifest/test_manifest_properties.py", "test_mutated_text"): ("slow",),
}


def needed_markers(item: pytest.Item) -> set[str]:
    """The markers `item` must carry, from its directory, fixtures and `BY_TEST`."""
    try:
        relative = item.path.resolve().relative_to(TESTS)
    except ValueError:  # a test outside tests/ (e.g. given on the command line)
        return set()
    needed = set(BY_DIRECTORY.get(relative.parts[0], ())) if len(relative.parts) > 1 else set()
    if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
        needed.add("postgres")
    name = getattr(item, "originalname", item.name)
    needed.update(BY_TEST.get((relative.as_posix(), name), ()))
    return needed


#: Test (node id without parameters, or a whole module: then each of its tests) ->
#: seconds it took in a full `make test` on the 2-core CI machine, busy (rounded): the
#: longest, which start first. The first key that matches counts: a test before its module.
LONGEST: dict[str, float] = {
    "tests/e2e/test_rollover_kills.py": 140,  # four rollovers of 60 s tokens, a kill at each
    "tests/e2e/test_rollover.py::test_an_always_on_recording_rolls_over_without_a_gap": 100,
    "tests/e2e/test_rollover.py": 12,  # each of the others: two windows; two refusals
    "tests/reliability/test_crashes.py": 85,
    "tests/reliability/test_api_faults.py": 85,
    "tests/replicas/test_rollover_takeover.py": 50,  # one rollover, one takeover
    "tests/replicas/test_failover.py::test_failover": 45,
    "tests/replicas/test_failover.py::test_postgres_down": 35,
    "tests/e2e/test_demo.py::test_banners_follow_the_daemon_and_sigint_ends_with_0": 50,
    "tests/reliability/test_two_writers.py": 45,
    "tests/e2e/test_notifications.py::test_a_failover_is_never_an_exit_announced_or_not": 35,
    "tests/e2e/test_notifications.py::test_a_killed_or_idled_out_recording_restarts_within_3_s": (
        15
    ),
    "tests/replicas/test_replicas.py::"
    "test_two_replicas_split_the_work_and_record_every_window_once": 40,
    "tests/replicas/test_replicas.py::"
    "test_a_third_replica_takes_its_share_without_cutting_a_recording": 20,
    "tests/e2e/test_daemon.py::test_a_boundary_never_waits_behind_another_manifests_call": 15,
    "tests/e2e/test_daemon.py": 5,  # each of the others
    "tests/reliability/test_exits.py": 28,
    "tests/replicas/test_notifications_replicas.py": 27,
    "tests/reliability/test_store_refuses_writes.py": 25,
    "tests/reliability/test_boundary_collisions.py": 20,
    "tests/reliability/test_bad_files.py::"
    "test_broken_edits_over_a_live_manifest_change_nothing": 10,
    "tests/reliability/test_bad_files.py::test_a_store_removed_under_the_daemon": 20,
    "tests/reliability/test_bad_files.py::"
    "test_mutated_manifests_load_without_crash_and_with_positions": 10,
    "tests/replicas/test_handover.py": 15,
    "tests/e2e/test_status_page.py::test_a_window_opening_shows_within_3_s_without_a_reload": 14,
    "tests/e2e/test_status_page.py": 4,  # each of the others
    "tests/e2e/test_apply_cli.py::test_apply_plan_status_round_trip": 35,
    "tests/unit/manifest/test_manifest_cache.py::test_the_memo_answers_as_a_fresh_search": 25,
    "tests/e2e/test_readme.py::test_the_first_recording_walkthrough_works_as_written": 25,
    "tests/unit/manifest/test_manifest_properties.py::test_mutated_documents": 20,
    "tests/unit/manifest/test_manifest_properties.py::test_mutated_text": 20,
    "tests/e2e/test_wheel_install.py": 5,  # each; the module's one install ~35 s
    "tests/reliability/test_descriptor_flood.py": 7,  # each
    "tests/reliability/test_store_backup.py": 12,
    "tests/e2e/test_deploys.py": 8,  # each
    "tests/e2e/test_monitoring.py": 0.5,  # each of 44 (promtool runs)
}

#: Seconds guessed from a marker, for tests not in `LONGEST` (the first that applies).
BY_MARKER: tuple[tuple[str, float], ...] = (
    ("reliability", 12.0),
    ("postgres", 6.0),
    ("e2e", 4.0),
    ("slow", 3.0),
)


def expected_seconds(item: pytest.Item) -> float:
    """How long `item` is expected to take: `LONGEST`, else by its markers."""
    nodeid = item.nodeid.split("[", 1)[0]
    for key, seconds in LONGEST.items():
        if nodeid == key or nodeid.startswith(f"{key}::"):
            return seconds
    for marker, seconds in BY_MARKER:
        if item.get_closest_marker(marker) is not None:
            return seconds
    return 0.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name in sorted(needed_markers(item)):
            if item.get_closest_marker(name) is None:
                item.add_marker(getattr(pytest.mark, name))
    # Modules longest first, each kept whole and in its own order (pytest-xdist's
    # loadscope hands out a module at a time, in the order of its first test).
    totals: dict[str, float] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        totals[module] = totals.get(module, 0.0) + expected_seconds(item)
    items.sort(key=lambda item: -totals[item.nodeid.split("::", 1)[0]])
