"""A command's one manifest load runs with the collector paused (`context.OneLoad`).

Covers: `load_once` answers what `load_manifests` answers, with no collection
during the load (where a plain load has several), the collector enabled again
afterwards and what was loaded frozen; a collector found disabled stays so; an
exception inside the load restores it too; young cyclic garbage is collected every
`COLLECT_EVERY` parses, not before.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.context import COLLECT_EVERY, OneLoad, load_once
from orchestrator.manifest.loader import load_manifests

EXAMPLES = Path(__file__).resolve().parents[3] / "recordings.d"


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    """The collector enabled and quick to run (a young generation of 50 objects, so that
    a plain load of the examples triggers it whatever earlier tests left cached or
    frozen); afterwards what a test froze is unfrozen, the collector enabled and its
    thresholds as found, for the next test."""
    thresholds = gc.get_threshold()
    gc.enable()
    gc.set_threshold(50, *thresholds[1:])
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()
    gc.enable()


class Collections:
    """Counts the collector's runs while it is installed (`gc.callbacks`)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.count += 1

    def __enter__(self) -> Collections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def test_a_load_runs_without_collections_and_freezes_what_it_loaded() -> None:
    gc.collect()
    with Collections() as plain:
        expected = load_manifests([EXAMPLES])
    assert plain.count > 0  # a load allocates enough to trigger the collector

    frozen = gc.get_freeze_count()
    with Collections() as paused:
        result = load_once([EXAMPLES], now=None, app_ids=None)
    assert paused.count == 0
    assert gc.isenabled()
    assert gc.get_freeze_count() > frozen
    assert result.diagnostics == expected.diagnostics
    assert result.failed_files == expected.failed_files
    assert [m.manifest for m in result.manifests] == [m.manifest for m in expected.manifests]


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    load_once([EXAMPLES], now=None, app_ids=None)
    assert not gc.isenabled()


def test_an_exception_in_the_load_restores_the_collector() -> None:
    with pytest.raises(RuntimeError), OneLoad().loading():
        assert not gc.isenabled()
        raise RuntimeError("inside the load")
    assert gc.isenabled()


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_young_garbage_is_collected_every_so_many_parses() -> None:
    hooks = OneLoad()
    freed: list[bool] = []
    with hooks.loading():
        cycle = Cycle()
        weakref.finalize(cycle, freed.append, True)
        del cycle  # only the collector can free it
        hooks.parsed(COLLECT_EVERY - 1)
        assert freed == []
        hooks.parsed(COLLECT_EVERY)
        assert freed == [True]
