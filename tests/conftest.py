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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name in sorted(needed_markers(item)):
            if item.get_closest_marker(name) is None:
                item.add_marker(getattr(pytest.mark, name))
