"""Each manifest's newest finished session, kept in step with a store's own writes.

Every pass, `plan`, `apply` and `status` read `latest_ended()`. With 10,000 manifests
that have a history, reading it from the database each time cost every pass about
half a second, most of it decoding 10,000 sessions on the event loop. A store that
is the only writer of its sessions (SQLite's writer: its lock keeps every other
process out) reads it once, then learns every change from its own writes, which
return each session as stored: a session that finishes becomes its manifest's newest
when it is newer than the one known (or is that one, written again). Two rare writes
send it back to the database for everything: taking back the newest finished session
of a manifest (a failover's 404 that was no end: the one before it is the newest
again) and a write that renames a session's manifest. So does another connection's
commit (an operator's `sqlite3` on the file, which the writer lock does not keep
out): the store asks SQLite before each answer (`SqlStore._written_by_others`).

It relies on the store's one runner: its statements run one at a time, in the order
they were made, and each answer reaches the event loop in that order. So a write
told before the read's answer ran before the read (the read holds it), and one told
after it ran after (it goes on top).

Must never: answer for a store that other processes write (PostgreSQL replicas, a
reader), or keep a session older than a write already told.

A store that others write too (a PostgreSQL replica) cannot learn every change from
its own writes, but its database tells each row's version (`xmin`: the transaction
that wrote it, new with every write by anyone). `KeptByVersion` keeps the sessions
of its last answer with their versions: each read asks for the ids and versions
alone (cheap: two columns), and only the sessions whose version is not the kept
one are read and decoded (at 10,000 manifests, decoding them all cost a replica
about 200 ms a pass).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping

from orchestrator.state.model import FINAL_PHASES, SessionRecord


class LatestFinished:
    """The newest finished session of each manifest, as far as this process's own
    reads and writes tell; nothing until a read is in (`loaded`)."""

    def __init__(self) -> None:
        self._by_manifest: dict[str, SessionRecord] | None = None

    @property
    def loaded(self) -> bool:
        return self._by_manifest is not None

    def read(self, latest: Mapping[str, SessionRecord]) -> None:
        """The database's answer: every manifest's newest finished session."""
        self._by_manifest = dict(latest)

    def saw(self, record: SessionRecord) -> None:
        """A session as one of this store's writes left it."""
        known = self._by_manifest
        if known is None:
            return
        current = known.get(record.manifest)
        if record.phase in FINAL_PHASES:
            if current is None or record.id >= current.id:  # newer, or written again
                known[record.manifest] = record
        elif current is not None and current.id == record.id:
            self.forget()  # taken back: the one before it is the newest again

    def forget(self) -> None:
        """Know nothing until the next read."""
        self._by_manifest = None

    def snapshot(self, app_ids: Collection[str] | None = None) -> dict[str, SessionRecord]:
        """What is kept (of sessions of `app_ids`; None: all)."""
        assert self._by_manifest is not None
        if app_ids is None:
            return dict(self._by_manifest)
        return {name: s for name, s in self._by_manifest.items() if s.app_id in app_ids}


class KeptByVersion:
    """The sessions of the last answer, each with its row version. One read at a
    time (`lock`): a read that began earlier and ended later would put back versions
    older than the ones a later read was told."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[str, SessionRecord]] = {}
        self.lock = asyncio.Lock()

    def stale(self, versions: Mapping[int, str]) -> list[int]:
        """Of the ids the database named with their versions, those not kept at
        that version: to be read."""
        kept = self._kept
        return [i for i, v in versions.items() if i not in kept or kept[i][0] != v]

    def answer(
        self,
        versions: Mapping[int, str],
        read: Iterable[tuple[str, SessionRecord]],
        app_ids: Collection[str] | None = None,
    ) -> dict[str, SessionRecord]:
        """Each manifest's session: the ones `read` (with their versions, read after
        `versions`: where a row changed in between, the later one), else the kept
        ones. What the database no longer names, of the App IDs asked for (None:
        all), is forgotten; what is kept of the others stays."""
        kept = self._kept
        for version, record in read:
            kept[record.id] = (version, record)
        answer: dict[str, SessionRecord] = {}
        keep: dict[int, tuple[str, SessionRecord]] = {}
        if app_ids is not None:
            keep = {i: entry for i, entry in kept.items() if entry[1].app_id not in app_ids}
        for session_id in versions:
            entry = kept.get(session_id)
            if entry is not None:  # None: deleted between the two reads
                keep[session_id] = entry
                answer[entry[1].manifest] = entry[1]
        self._kept = keep
        return answer
