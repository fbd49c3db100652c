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
again) and a write that renames a session's manifest.

It relies on the store's one runner: its statements run one at a time, in the order
they were made, and each answer reaches the event loop in that order. So a write
told before the read's answer ran before the read (the read holds it), and one told
after it ran after (it goes on top).

Must never: answer for a store that other processes write (PostgreSQL replicas, a
reader), or keep a session older than a write already told.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

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
