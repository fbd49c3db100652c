"""What the API answered, kept until the store takes it.

Every mutating call is followed by a write of its outcome. When that write fails
(the store locked by another process, the disk full, the file removed), the answer
must not be lost: a start's sid lost means the next pass replays the start, Agora
answers 7, and the recording can no longer be stopped. So the executor writes
outcomes through this outbox: a write the store refuses is kept, with the others
about the same session behind it in order, and written as soon as the store takes
writes again (`flush`, at the start of every pass, and before anything else is
written about that session: `settle`).

While it keeps any, the sessions concerned are *unsettled*: the store's rows for
them are stale (a start still shows its intent), so the daemon plans nothing for
their manifests and queries nothing for them until they are settled. `writable`
says whether the store took the last write the executor tried: it turns False at
a refused write and True only at an accepted one, so readiness does not flap
while reads succeed and writes fail.

It must never reorder the writes about one session, and never drop one unless
the store says another replica owns the session's App ID now (fencing: the new
owner settles the call from its intent).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from orchestrator.state import SessionFields, SessionRecord, Store, StoreError, StoreFencedError

log = structlog.get_logger("orchestrator.reconcile")


@dataclass(frozen=True)
class _Write:
    """One kept write: an outcome (clears the intent) or a plain update."""

    outcome: bool
    values: Mapping[str, Any]


class Outbox:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._kept: dict[int, list[_Write]] = {}
        self._manifests: dict[int, str] = {}
        self.writable = True

    @property
    def unsettled(self) -> Mapping[int, str]:
        """Session id -> manifest name of every session with writes still kept."""
        return dict(self._manifests)

    async def outcome(self, session: SessionRecord, **values: Any) -> SessionRecord:
        """`record_outcome` of a call's answer; kept when the store refuses it. Returns
        the session as stored, or as it will be once the kept writes are in."""
        return await self._put(session, _Write(True, values))

    async def update(self, session: SessionRecord, **values: Any) -> SessionRecord:
        """`update_session` of what a call taught (an error), in order with the rest."""
        return await self._put(session, _Write(False, values))

    async def settle(self, session_id: int) -> None:
        """Write what is kept about `session_id` before anything else is; StoreError
        when the store still refuses (then nothing more is written, nor sent, for it)."""
        if session_id in self._kept and not await self._drain(session_id):
            raise StoreError(f"the store does not take writes: session {session_id} waits")

    async def flush(self) -> bool:
        """Write everything kept, session by session in order; True when nothing is left."""
        for session_id in list(self._kept):
            if not await self._drain(session_id):
                return False
        return True

    async def settle_all(self, attempts: int = 5, pause: float = 1.0) -> tuple[str, ...]:
        """The last word of a run (`apply`'s end, the daemon's stop): everything kept
        written, with a few tries; what is still left (`left`)."""
        for attempt in range(attempts):
            if await self.flush():
                return ()
            if attempt < attempts - 1:
                await asyncio.sleep(pause)
        return self.left()

    def left(self) -> tuple[str, ...]:
        """What is kept, one line a session with its sid, for an operator (the log's
        `store.outcome_kept` said it first)."""
        return tuple(
            f"{manifest}: the store did not take the outcome of session {session_id}'s last "
            f"call (sid {self._sid(session_id) or 'none'}); its intent stays, and the next "
            "pass replays it"
            for session_id, manifest in sorted(self._manifests.items())
        )

    def _sid(self, session_id: int) -> str | None:
        found = (w.values.get("sid") for w in reversed(self._kept.get(session_id, [])))
        return next((sid for sid in found if sid), None)

    def accepted(self) -> None:
        """A write of the executor's own went through: the store takes writes."""
        self.writable = True

    def refused(self) -> None:
        """A write of the executor's own was refused: the store does not take writes."""
        self.writable = False

    async def _put(self, session: SessionRecord, write: _Write) -> SessionRecord:
        expected = _as_written(session, write)
        if session.id in self._kept:  # behind what is kept already, in order
            self._keep(session, write)
            await self._drain(session.id)
            return expected
        try:
            stored = await self._apply(session.id, write)
        except StoreFencedError:
            raise
        except StoreError as exc:
            self._keep(session, write)
            log.error(
                "store.outcome_kept",
                manifest=session.manifest,
                session_id=session.id,
                sid=expected.sid,
                error=str(exc),
                detail="the API's answer is kept and written as soon as the store takes it",
            )
            return expected
        self.writable = True
        return stored

    def _keep(self, session: SessionRecord, write: _Write) -> None:
        self._kept.setdefault(session.id, []).append(write)
        self._manifests[session.id] = session.manifest
        self.writable = False

    async def _drain(self, session_id: int) -> bool:
        kept = self._kept.get(session_id, [])
        while kept:
            try:
                await self._apply(session_id, kept[0])
            except StoreFencedError:
                log.warning("store.outcome_dropped", session_id=session_id, kept=len(kept))
                kept.clear()  # another replica owns it now: it settles the call
                break
            except StoreError:
                self.writable = False
                return False
            kept.pop(0)
        self._kept.pop(session_id, None)
        manifest = self._manifests.pop(session_id, None)
        self.writable = True
        if manifest is not None:
            log.info("store.outcome_written", manifest=manifest, session_id=session_id)
        return True

    async def _apply(self, session_id: int, write: _Write) -> SessionRecord:
        values: SessionFields = dict(write.values)  # type: ignore[assignment]
        if write.outcome:
            return await self._store.record_outcome(session_id, **values)
        return await self._store.update_session(session_id, **values)


def _as_written(session: SessionRecord, write: _Write) -> SessionRecord:
    """The session as the store will hold it once `write` is in."""
    cleared: dict[str, Any] = (
        {"intent": None, "intent_at": None, "error": None} if write.outcome else {}
    )
    return dataclasses.replace(session, **{**cleared, **write.values})
