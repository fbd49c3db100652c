"""What loading manifests gives: the records every part of the loading shares.

A valid manifest with its place (`LoadedManifest`), the answer of one load
(`LoadResult`) and what it cost (`LoadStats`), and what a manifest occupies while
it records (`Target`: one per uid, `targets_of`). Defined here once, so that the
loader, the cache and the cross-file checks share them without importing each other.

Records only: this module must never read a file or decide anything.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.manifest.model import Manifest
from orchestrator.schedule import Schedule

__all__ = ["LoadResult", "LoadStats", "LoadedManifest", "Target", "target_of", "targets_of"]


@dataclass(frozen=True)
class LoadedManifest:
    """A valid manifest and where its document starts."""

    manifest: Manifest
    file: str
    line: int
    column: int
    document: int = 0
    key_positions: Mapping[str, tuple[int, int]] = field(default_factory=dict, compare=False)

    def position_of(self, key: str) -> tuple[int, int]:
        """Line and column of a top-level key, or of the document when it is absent."""
        return self.key_positions.get(key, (self.line, self.column))

    # Computed once for this loaded version, when first asked for, and kept with it in
    # the daemon's snapshot (`snapshot`): a restart computes neither again.

    @functools.cached_property
    def spec_hash(self) -> str:
        """The manifest's `spec_digest`."""
        return self.manifest.spec_digest()

    @property
    def hashed(self) -> bool:
        """Whether `spec_hash` was computed already."""
        return "spec_hash" in self.__dict__

    def dumped(self) -> dict[str, Any]:
        """The manifest as a document (as the store keeps a last known good version);
        `spec_hash` is computed from the same dump when it was not yet."""
        document = self.manifest.document()
        if not self.hashed:
            self.__dict__["spec_hash"] = self.manifest.spec_digest(document)  # cached
        return document

    def dumped_unless_hashed(self) -> dict[str, Any] | None:
        """A version not hashed yet is dumped once, for its spec hash and its document
        (returned: the store may want it); None when it was hashed already."""
        return None if self.hashed else self.dumped()

    @functools.cached_property
    def schedule(self) -> Schedule:
        """The manifest's schedule, built (`Manifest.build_schedule`)."""
        return self.manifest.build_schedule()


@dataclass(frozen=True)
class LoadResult:
    manifests: list[LoadedManifest]  # every valid document of files without errors
    diagnostics: list[Diagnostic]  # errors and warnings, all files
    failed_files: frozenset[str]  # files (and paths that cannot be read) with an error
    files: tuple[str, ...] = ()  # every file that was read
    # added, modified or removed since the cache's previous load (a fresh load: every file),
    # and paths that became unreadable or readable again; history, not content, so not compared
    changed: frozenset[str] = field(default=frozenset(), compare=False)
    # Paths (given paths, directories, symlinks, files) that could not be read, each with
    # an error diagnostic, and files that are not regular ones (a FIFO, a socket, a device:
    # skipped, with a warning). What they held is unknown, not gone: a manifest last loaded
    # from a file at or under one of them failed to load, it was not removed.
    unreadable: frozenset[str] = frozenset()

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.failed_files


@dataclass(frozen=True)
class LoadStats:
    """What one `ManifestCache.load` did: which files came, went or changed, and the work."""

    files: int
    added: frozenset[str]
    modified: frozenset[str]  # bytes (or readability) differ from the version held
    removed: frozenset[str]
    read: int  # files whose bytes were read (new, key changed, or racy)
    parsed: int  # files parsed and validated (new, or bytes changed)
    listed: int  # directories listed (new, key changed, or racy)
    seconds: float
    # files of `parsed` parsed a second time, with the round-trip loader, to place their
    # findings: only files with something to report that the fast path could not place
    positioned: int = 0
    # files whose bytes were taken from what an earlier process saved (`snapshot`),
    # not parsed: not in `parsed`
    restored: int = 0
    # files of `parsed` parsed by a worker process (`helper`), beside the loading thread
    helped: int = 0

    @property
    def changed(self) -> frozenset[str]:
        return self.added | self.modified | self.removed


class Target(NamedTuple):
    """What one recorder occupies while it records: a channel and a uid of an App ID.

    `app` is the App ID when the caller knows the profiles' App IDs (the daemon,
    `plan`, `apply`): two profiles of one App ID are one project to Agora. Without
    them (`validate` runs without a config), or for a profile the mapping does not
    name, it is the profile name, and `by_profile` keeps the two kinds of names
    apart (a profile may be called like another's App ID).
    """

    app: str
    channel: str
    uid: int
    by_profile: bool = False


def target_of(m: LoadedManifest, app_ids: Mapping[str, str] | None = None) -> Target:
    """The target a manifest records as (its `uid`), with `auto` resolved; `app_ids`:
    profile name -> App ID, when known."""
    return targets_of(m, app_ids)[0]


def targets_of(m: LoadedManifest, app_ids: Mapping[str, str] | None = None) -> tuple[Target, ...]:
    """Every target a manifest occupies while it records, in the order of
    `Manifest.uids()`: its uid's and its rolloverUid's (a rollover's successor is a
    second recorder in the channel, and sessions alternate between the two uids)."""
    spec = m.manifest
    app_id = app_ids.get(spec.app) if app_ids is not None else None
    if app_id is None:
        return tuple(
            Target(spec.app, spec.channel, uid, by_profile=True) for _, uid, _ in spec.uids()
        )
    return tuple(Target(app_id, spec.channel, uid) for _, uid, _ in spec.uids())
