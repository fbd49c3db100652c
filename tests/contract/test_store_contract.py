"""One contract for every state store: SQLite (a real file) and PostgreSQL (a real
throwaway server, tests/postgres.py).

Each test runs once per store (`backend` is parametrized) and asserts only what the
`Store` protocol (orchestrator/state/protocol.py) promises, so that reconcile, the
daemon and the CLI may use either one. Covers: creating and reading sessions
(defaults, timestamps, every field, tz-aware datetimes exact to the microsecond in
any zone), updating each kind of column (enums, datetimes, None, JSON lists,
strings, objects), unknown fields and naive datetimes refused, a session id the
store does not hold (SessionNotFoundError, a StoreError, never a KeyError),
conditional updates checked against the phase, intents and outcomes, the live /
unmanageable / sid-less / history / latest-ended queries, manifest states and clearing
failures, the last known good index and its writes (unchanged rows keep their
`stored_at`), one live session per target (StoreConflictError), what `fence` does
(nothing on SQLite; on PostgreSQL every session write of an App ID it does not
hold is StoreFencedError, reads and other writes go on), readers that cannot
write, closed stores, the schema version and the location.

Stores use the real clock: timestamps are checked against bounds taken around each
call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest

from orchestrator.state import (
    EndKind,
    Intent,
    KnownGood,
    ManifestState,
    Phase,
    SessionNotFoundError,
    SessionRecord,
    StoreError,
    StoreFencedError,
    open_store,
)
from orchestrator.state.errors import StoreConflictError
from orchestrator.state.postgres import open_postgres_store
from orchestrator.state.protocol import Store

# Microseconds, and an offset that is not UTC, so that exact round trips are tested.
IST = timezone(timedelta(hours=5, minutes=30))
T0 = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 14, 31, 2, 654321, tzinfo=IST)
MAX_UID = 2**32 - 1  # Agora uids are 32-bit unsigned


@dataclass
class Backend:
    """One kind of store at one URL; closes every store it opened."""

    kind: str
    url: str
    opened: list[Store] = field(default_factory=list)

    async def open(self, *, writer: bool = True, create: bool = False) -> Store:
        store: Store
        if self.kind == "sqlite":
            store = cast(Store, open_store(self.url, writer=writer, create=create))
        else:
            store = await open_postgres_store(self.url, writer=writer, create=create)
        self.opened.append(store)
        return store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        return "sqlite", f"sqlite:///{tmp_path}/state.db"
    return "postgres", str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def backend(backend_url: tuple[str, str]) -> AsyncIterator[Backend]:
    kind, url = backend_url
    opened = Backend(kind, url)
    try:
        yield opened
    finally:
        for store in reversed(opened.opened):
            await store.aclose()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open(create=True)


def target(uid: int = 527841, manifest: str = "standup", **extra: Any) -> dict[str, Any]:
    """The fields a new session needs (one target per uid)."""
    return {
        "manifest": manifest,
        "app": "main",
        "app_id": "app1",
        "channel": "room",
        "uid": uid,
        "mode": "mix",
        **extra,
    }


def loose(**fields: Any) -> dict[str, Any]:
    """Fields the protocol's types would refuse, to see the store refuse them too."""
    return fields


def now() -> datetime:
    return datetime.now(UTC)


def assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value


FILE_LIST = [
    {
        "fileName": "sid_room.m3u8",
        "trackType": "audio_and_video",
        "uid": "0",
        "mixedAllUser": True,
        "isPlayable": True,
        "sliceStartTime": 1772355600123,
    }
]

EVERY_FIELD: dict[str, Any] = {
    **target(MAX_UID, channel="room ü/#1"),
    "mode": "individual",
    "phase": Phase.RUNNING,
    "updated_at": T0,
    "resource_id": "R" * 200,
    "sid": "S1",
    "source_file": "/etc/orchestrator/recordings.d/standup.yaml",
    "spec_hash": "spec",
    "subscription_hash": "sub",
    "layout_hash": "layout",
    "restart_hash": "restart",
    "window_start": T0,
    "window_end": T1,
    "started_at": T0 + timedelta(microseconds=1),
    "ended_at": T1 + timedelta(days=1),
    "last_query_at": T1,
    "last_status": 5,
    "end_reason": "idle exit",
    "end_kind": EndKind.EXITED,
    "file_list": FILE_LIST,
    "uploading_status": "uploaded",
    "restart_count": 3,
    "intent": Intent.UPDATE_LAYOUT,
    "intent_at": T1,
    "error": "code 7: 'quoted' \"text\"",
}


# -- creating and reading ---------------------------------------------------------------


async def test_create_session_defaults(store: Store) -> None:
    before = now()
    created = await store.create_session(**target())
    after = now()
    assert isinstance(created.id, int)
    assert created.phase is Phase.ACQUIRING and created.is_live
    assert created.restart_count == 0
    assert before <= created.created_at <= after
    assert created.updated_at == created.created_at
    assert_utc(created.created_at)
    assert_utc(created.updated_at)
    for name in (
        "resource_id",
        "sid",
        "source_file",
        "spec_hash",
        "window_start",
        "window_end",
        "started_at",
        "ended_at",
        "last_query_at",
        "last_status",
        "end_reason",
        "end_kind",
        "file_list",
        "uploading_status",
        "intent",
        "intent_at",
        "error",
    ):
        assert getattr(created, name) is None, name
    assert await store.get_session(created.id) == created
    second = await store.create_session(**target(uid=2))
    assert second.id > created.id


async def test_create_session_stores_every_field(store: Store) -> None:
    created = await store.create_session(**EVERY_FIELD)
    for name, value in EVERY_FIELD.items():
        assert getattr(created, name) == value, name
    assert created.phase is Phase.RUNNING and created.intent is Intent.UPDATE_LAYOUT
    assert created.end_kind is EndKind.EXITED  # an enum again, not text
    assert created.updated_at == T0  # a caller's updated_at is kept on create
    assert await store.get_session(created.id) == created


async def test_a_session_read_back_is_a_whole_frozen_record(store: Store) -> None:
    # The codec fills a record's fields without its __init__ (the speed of a pass
    # that reads 10,000): what it gives must be what __init__ would have made.
    created = await store.create_session(**EVERY_FIELD)
    got = await store.get_session(created.id)
    built = SessionRecord(**{f.name: getattr(got, f.name) for f in dataclasses.fields(got)})
    assert got == built and repr(got) == repr(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.phase = Phase.ENDED  # type: ignore[misc]
    assert dataclasses.replace(got, phase=Phase.ENDED).phase is Phase.ENDED
    assert got.phase is Phase.RUNNING


async def test_datetimes_round_trip_exactly_and_come_back_in_utc(store: Store) -> None:
    created = await store.create_session(**target(), window_start=T1, window_end=T0)
    got = await store.get_session(created.id)
    assert got.window_start == T1 and got.window_end == T0
    assert got.window_start is not None
    assert got.window_start.microsecond == 654321
    assert got.window_start.utctimetuple()[:6] == (2026, 3, 1, 9, 1, 2)
    for value in (got.window_start, got.window_end, got.created_at, got.updated_at):
        assert_utc(value)
    updated = await store.update_session(created.id, ended_at=T1 + timedelta(microseconds=1))
    assert updated.ended_at == T1 + timedelta(microseconds=1)
    assert_utc(updated.ended_at)


async def test_a_session_the_store_does_not_hold_is_session_not_found(store: Store) -> None:
    created = await store.create_session(**target())
    operations: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get_session(424242),
        lambda: store.update_session(424242, sid="S"),
        lambda: store.record_intent(424242, Intent.STOP),
        lambda: store.record_outcome(424242, phase=Phase.ENDED),
    ]
    for operation in operations:
        with pytest.raises(SessionNotFoundError) as caught:
            await operation()
        error = caught.value
        assert isinstance(error, StoreError) and not isinstance(error, KeyError)
        assert error.session_id == 424242
        assert str(error) == f"state store {store.location} has no session 424242"
    # A conditional update says "not written" instead; nothing else changed.
    assert await store.update_session_if(424242, [Phase.ACQUIRING], sid="S") is None
    assert await store.live_sessions() == [created]


async def test_unknown_fields_and_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(TypeError, match="unknown session fields"):
        await store.create_session(**target(), **loose(customer_secret="x"))
    with pytest.raises(TypeError, match="timezone-aware"):
        await store.create_session(**target(), window_start=datetime(2026, 1, 1))
    assert await store.live_sessions() == []
    created = await store.create_session(**target())
    with pytest.raises(TypeError, match="unknown session fields"):
        await store.update_session(created.id, sid="S", **loose(bogus=1))
    with pytest.raises(TypeError, match="unknown session fields"):
        await store.update_session(created.id, **loose(id=7))
    with pytest.raises(TypeError, match="unknown session fields"):
        await store.update_session_if(created.id, [Phase.ACQUIRING], **loose(created_at=T0))
    with pytest.raises(TypeError, match="timezone-aware"):
        await store.update_session(created.id, ended_at=datetime(2026, 1, 1))
    assert await store.get_session(created.id) == created


# -- updating -----------------------------------------------------------------------------

UPDATES: list[tuple[str, Any]] = [
    ("phase", Phase.STOPPING),
    ("phase", Phase.UNMANAGEABLE),
    ("intent", Intent.STOP),
    ("intent", None),
    ("started_at", T1),
    ("ended_at", T0),
    ("ended_at", None),
    ("last_status", 4),
    ("last_status", None),
    ("restart_count", 2),
    ("file_list", FILE_LIST),
    ("file_list", "sid_room.m3u8"),
    ("file_list", {"nested": [1, 2.5, None, True, "ü"]}),
    ("file_list", []),
    ("file_list", None),
    ("resource_id", "R2"),
    ("resource_id", None),
    ("uid", MAX_UID),
    ("channel", "another room"),
    ("error", "code 2"),
]


async def test_update_session_writes_each_kind_of_column(store: Store) -> None:
    created = await store.create_session(**target())
    previous = created
    for column, value in UPDATES:
        before = now()
        updated = await store.update_session(created.id, **{column: value})
        after = now()
        assert getattr(updated, column) == value, (column, value)
        if value is not None:
            assert type(getattr(updated, column)) is type(value), (column, value)
        assert before <= updated.updated_at <= after
        assert_utc(updated.updated_at)
        # Nothing else changed.
        assert replace(updated, updated_at=previous.updated_at) == replace(
            previous, **{column: value}
        ), column
        assert await store.get_session(created.id) == updated
        previous = updated


async def test_update_session_if_checks_the_phase(store: Store) -> None:
    created = await store.create_session(**target())
    written = await store.update_session_if(
        created.id, [Phase.ACQUIRING, Phase.STARTING], phase=Phase.STARTING, resource_id="R"
    )
    assert written is not None
    assert written.phase is Phase.STARTING and written.resource_id == "R"
    assert await store.get_session(created.id) == written
    # Not in one of the phases: nothing is written, updated_at included.
    refused = await store.update_session_if(
        created.id, {Phase.RUNNING, Phase.UPDATING}, phase=Phase.STOPPING, sid="X"
    )
    assert refused is None
    assert await store.get_session(created.id) == written
    assert await store.update_session_if(created.id, [], sid="X") is None
    assert await store.update_session_if(424242, [Phase.ACQUIRING], sid="X") is None
    again = await store.update_session_if(created.id, (Phase.STARTING,), sid="S1")
    assert again is not None and again.sid == "S1" and again.phase is Phase.STARTING


async def test_record_intent_and_outcome(store: Store) -> None:
    created = await store.create_session(**target())
    before = now()
    intended = await store.record_intent(created.id, Intent.START, phase=Phase.STARTING)
    after = now()
    assert intended.intent is Intent.START and intended.phase is Phase.STARTING
    assert intended.intent_at is not None and before <= intended.intent_at <= after
    assert_utc(intended.intent_at)
    assert before <= intended.updated_at <= after
    assert await store.get_session(created.id) == intended

    failed = await store.record_outcome(created.id, error="code 65")
    assert failed.intent is None and failed.intent_at is None
    assert failed.error == "code 65" and failed.phase is Phase.STARTING

    await store.record_intent(created.id, Intent.START)
    outcome = await store.record_outcome(created.id, sid="S1", phase=Phase.RUNNING, started_at=T0)
    assert outcome.intent is None and outcome.intent_at is None and outcome.error is None
    assert outcome.sid == "S1" and outcome.phase is Phase.RUNNING and outcome.started_at == T0
    assert await store.get_session(created.id) == outcome

    # An outcome may keep an intent on purpose (a retried call).
    kept = await store.record_outcome(created.id, intent=Intent.STOP, intent_at=T1)
    assert kept.intent is Intent.STOP and kept.intent_at == T1


# -- queries ------------------------------------------------------------------------------


async def test_live_sessions_in_id_order_without_final_ones(store: Store) -> None:
    ids = {}
    for uid, phase in enumerate(Phase, start=1):
        created = await store.create_session(**target(uid=uid))
        if phase is not Phase.ACQUIRING:
            await store.update_session(created.id, phase=phase)
        ids[phase] = created.id
    live = await store.live_sessions()
    assert [s.id for s in live] == sorted(
        ids[p] for p in Phase if p not in {Phase.ENDED, Phase.FAILED}
    )
    assert all(s.is_live for s in live)
    assert {s.phase for s in live} == set(Phase) - {Phase.ENDED, Phase.FAILED}
    assert live == [await store.get_session(s.id) for s in live]


async def test_unmanageable_on_one_target(store: Store) -> None:
    first = await store.create_session(**target(uid=7), phase=Phase.UNMANAGEABLE)
    second = await store.create_session(**target(uid=7), phase=Phase.UNMANAGEABLE)
    await store.create_session(**target(uid=7))  # a fresh attempt on the same target
    ended = await store.create_session(**target(uid=7), phase=Phase.UNMANAGEABLE)
    await store.update_session(ended.id, phase=Phase.ENDED)
    await store.create_session(**target(uid=8), phase=Phase.UNMANAGEABLE)
    await store.create_session(**{**target(uid=7), "channel": "other"}, phase=Phase.UNMANAGEABLE)
    await store.create_session(**{**target(uid=7), "app_id": "app2"}, phase=Phase.UNMANAGEABLE)
    found = await store.unmanageable_on("app1", "room", 7)
    assert [s.id for s in found] == [first.id, second.id]
    assert all(s.phase is Phase.UNMANAGEABLE for s in found)
    assert await store.unmanageable_on("app1", "room", 9) == []


async def test_sidless_on_a_channel_and_uid_of_any_app_id(store: Store) -> None:
    lost = await store.create_session(**target(uid=7), phase=Phase.UNMANAGEABLE)
    other_app = await store.create_session(
        **{**target(uid=7), "app_id": "app2"}, phase=Phase.STARTING, intent=Intent.START
    )
    # Not a sid a notification may name: a sid known, acquiring, ended, another target.
    await store.create_session(**target(uid=7), phase=Phase.UNMANAGEABLE, sid="S-known")
    await _finish(store, await store.create_session(**target(uid=7)), Phase.FAILED)
    await store.create_session(**target(uid=7), phase=Phase.ACQUIRING)
    await store.create_session(**target(uid=8), phase=Phase.UNMANAGEABLE)
    await store.create_session(**{**target(uid=7), "channel": "hall"}, phase=Phase.UNMANAGEABLE)
    found = await store.sidless_on("room", 7)
    assert [s.id for s in found] == [lost.id, other_app.id]
    assert [s.app_id for s in found] == ["app1", "app2"]
    assert all(s.sid is None for s in found)
    assert await store.sidless_on("room", 9) == []


async def _finish(store: Store, created: SessionRecord, phase: Phase) -> SessionRecord:
    return await store.record_outcome(created.id, phase=phase, ended_at=T1, end_reason=phase.value)


async def test_history_newest_first_finals_only(store: Store) -> None:
    a1 = await _finish(store, await store.create_session(**target(1, "a")), Phase.ENDED)
    b1 = await _finish(store, await store.create_session(**target(2, "b")), Phase.FAILED)
    a2 = await _finish(store, await store.create_session(**target(3, "a")), Phase.FAILED)
    await store.create_session(**target(4, "a"))  # live: not history
    await store.create_session(**target(5, "a"), phase=Phase.UNMANAGEABLE)  # not final either
    a3 = await _finish(store, await store.create_session(**target(6, "a")), Phase.ENDED)
    history = await store.history()
    assert [s.id for s in history] == [a3.id, a2.id, b1.id, a1.id]
    assert history[0] == a3 and history[-1] == a1
    assert [s.id for s in await store.history(limit=2)] == [a3.id, a2.id]
    assert await store.history(limit=0) == []
    assert [s.id for s in await store.history(manifest="a")] == [a3.id, a2.id, a1.id]
    assert [s.id for s in await store.history(limit=1, manifest="a")] == [a3.id]
    assert [s.id for s in await store.history(manifest="b")] == [b1.id]
    assert await store.history(manifest="nope") == []


async def test_latest_ended_per_manifest(store: Store) -> None:
    assert await store.latest_ended() == {}
    await _finish(store, await store.create_session(**target(1, "a")), Phase.ENDED)
    a2 = await _finish(store, await store.create_session(**target(2, "a")), Phase.FAILED)
    b1 = await _finish(store, await store.create_session(**target(3, "b")), Phase.ENDED)
    await store.create_session(**target(4, "a"))  # newer, but live
    await store.create_session(**target(5, "c"))  # only live sessions: absent
    latest = await store.latest_ended()
    assert latest == {"a": a2, "b": b1}


async def test_latest_ended_is_the_newest_finished_of_every_manifest(
    backend: Backend, store: Store
) -> None:
    """Many manifests (names that sort next to each other, share prefixes or are not
    ASCII) on two App IDs, finished and live sessions interleaved, one taken back to
    running, one moved to another manifest, one failed again, one written again in
    place: each manifest's newest finished session, as a scan of every session finds
    it, for the writer and for a reader (which reads what the database keeps), all
    of them or one App ID's."""
    names = ["a", "a-b", "a b", "ab", "B", "z", "éte", "漢字", "m" * 200]
    finished = (Phase.ENDED, Phase.FAILED)
    for n in range(120):  # a fixed interleaving: the same every run
        name = names[(n * 7) % len(names)]
        app_id = "app2" if name in ("B", "z") else "app1"
        created = await store.create_session(**target(n + 1, name, app_id=app_id))
        if n % 5 != 4:  # every fifth stays live
            await _finish(store, created, finished[n % 2])
    taken_back = (await store.history(1, manifest="z"))[0]
    await store.update_session(taken_back.id, phase=Phase.RUNNING, ended_at=None)
    moved = (await store.history(1, manifest="ab"))[0]
    await store.update_session(moved.id, manifest="a-b")  # older than a-b's newest
    again = (await store.history(1, manifest="B"))[0]
    await store.update_session(again.id, phase=Phase.FAILED)  # final to final
    every = await store.history(-1) + await store.live_sessions()
    expected: dict[str, SessionRecord] = {}
    for session in sorted(every, key=lambda s: s.id):
        if session.phase in finished:
            expected[session.manifest] = session
    assert expected["z"].id != taken_back.id
    assert expected["ab"].id != moved.id and expected["a-b"].id != moved.id
    assert expected["B"].id == again.id
    of_app2 = {name: s for name, s in expected.items() if s.app_id == "app2"}
    assert set(of_app2) == {"B", "z"}
    reader = await backend.open(writer=False)
    for answering in (store, reader):
        assert await answering.latest_ended() == expected
        assert await answering.latest_ended(["app2"]) == of_app2
        assert await answering.latest_ended(["app2", "app1"]) == expected
        assert await answering.latest_ended([]) == {}
    # The newest finished session of "z" finishes again: it is the newest once more.
    await store.update_session(taken_back.id, phase=Phase.ENDED)
    for answering in (store, reader):
        assert (await answering.latest_ended(["app2"]))["z"].id == taken_back.id
    # A newest finished session written again in place (its end confirmed, say):
    # every answer after the write has it as written, whoever asked before.
    rewritten = await store.update_session(again.id, end_reason="rewritten", confirm_until=None)
    for answering in (store, reader):
        assert (await answering.latest_ended())["B"] == rewritten
        assert (await answering.latest_ended(["app2"]))["B"].end_reason == "rewritten"


# -- manifest states ------------------------------------------------------------------------


async def test_manifest_states_upsert_and_round_trip(store: Store) -> None:
    assert await store.manifest_states() == {}
    failing = ManifestState(name="a", failed_spec_hash="h", failure_reason="code 2", failed_at=T1)
    await store.set_manifest_state(failing)
    await store.set_manifest_state(ManifestState(name="b"))
    states = await store.manifest_states()
    assert states == {"a": failing, "b": ManifestState(name="b")}
    assert_utc(states["a"].failed_at)
    replaced = ManifestState(name="a", failed_spec_hash="h2", failure_reason=None, failed_at=T0)
    await store.set_manifest_state(replaced)
    assert (await store.manifest_states())["a"] == replaced
    await store.set_manifest_state(ManifestState(name="a"))
    assert (await store.manifest_states())["a"] == ManifestState(name="a")


async def test_clear_failures_all_or_by_name(store: Store) -> None:
    for name in ("a", "b", "c"):
        await store.set_manifest_state(
            ManifestState(name=name, failed_spec_hash=f"h{name}", failure_reason="x", failed_at=T0)
        )
    await store.set_manifest_state(ManifestState(name="ok"))
    assert await store.clear_failures(["a", "unknown"]) == 1
    states = await store.manifest_states()
    assert states["a"] == ManifestState(name="a")  # kept, with its failure cleared
    assert states["b"].failed_spec_hash == "hb" and states["c"].failed_at == T0
    assert await store.clear_failures([]) == 0
    assert await store.clear_failures() == 2
    assert await store.clear_failures() == 0
    assert set(await store.manifest_states()) == {"a", "b", "c", "ok"}
    assert all(s == ManifestState(name=s.name) for s in (await store.manifest_states()).values())


# -- last known good manifests -----------------------------------------------------------------

DOC_A = {"name": "a", "recording": {"channel": "room ü", "uids": [1, 2], "mix": True, "r": 1.5}}
DOC_B = {"name": "b", "secrets": {"customer": "${env:AGORA_SECRET}"}, "none": None}


async def test_known_good_all_by_name_and_without_documents(store: Store) -> None:
    assert await store.known_good() == {}
    before = now()
    await store.remember_known_good(
        [KnownGood("a", "/r/a.yaml", "ha", DOC_A), KnownGood("b", "/r/b.yaml", "hb", DOC_B)]
    )
    after = now()
    everything = await store.known_good()
    assert set(everything) == {"a", "b"}
    a = everything["a"]
    assert (a.name, a.source_file, a.spec_hash, a.document) == ("a", "/r/a.yaml", "ha", DOC_A)
    assert everything["b"].document == DOC_B
    assert a.stored_at is not None and before <= a.stored_at <= after
    assert_utc(a.stored_at)
    assert await store.known_good(["a", "unknown"]) == {"a": a}
    assert await store.known_good({"b"}) == {"b": everything["b"]}
    assert await store.known_good([]) == {}
    index = await store.known_good(documents=False)
    assert index == {name: replace(kg, document={}) for name, kg in everything.items()}
    assert await store.known_good(["b", "zz"], documents=False) == {
        "b": replace(everything["b"], document={})
    }


async def test_remember_known_good_leaves_unchanged_rows_alone(store: Store) -> None:
    await store.remember_known_good(
        [
            KnownGood("a", "/r/a.yaml", "ha", DOC_A),
            KnownGood("b", "/r/b.yaml", "hb", DOC_B),
            KnownGood("c", "/r/c.yaml", "hc", {}),
        ]
    )
    first = await store.known_good()
    # Same spec and file: the row (its document and stored_at included) is left alone.
    # Changed spec, or changed file: the row is replaced. New name: added.
    await store.remember_known_good(
        [
            KnownGood("a", "/r/a.yaml", "ha", {"other": "document"}),
            KnownGood("b", "/r/b.yaml", "hb2", DOC_A),
            KnownGood("c", "/r/moved/c.yaml", "hc", {"moved": True}),
            KnownGood("d", "/r/d.yaml", "hd", DOC_B),
        ],
        forget=["never-stored"],
    )
    second = await store.known_good()
    assert second["a"] == first["a"]
    assert second["b"].spec_hash == "hb2" and second["b"].document == DOC_A
    assert second["c"].source_file == "/r/moved/c.yaml" and second["c"].document == {"moved": True}
    for name in ("b", "c"):
        stored, earlier = second[name].stored_at, first[name].stored_at
        assert stored is not None and earlier is not None and stored >= earlier
    assert second["d"].document == DOC_B
    # Forgetting, with and without entries, in one call.
    await store.remember_known_good([KnownGood("e", "/r/e.yaml", "he", {})], forget=["a", "b"])
    assert set(await store.known_good()) == {"c", "d", "e"}
    await store.remember_known_good([], forget=["c"])
    assert set(await store.known_good()) == {"d", "e"}
    await store.remember_known_good([])
    assert set(await store.known_good()) == {"d", "e"}


# -- one live session per target ----------------------------------------------------------------


async def test_one_live_session_per_target(
    store: Store, backend: Backend, request: pytest.FixtureRequest
) -> None:
    first = await store.create_session(**target(uid=7))
    with pytest.raises(StoreConflictError) as caught:
        await store.create_session(**target(uid=7, manifest="other"))
    error = caught.value
    assert (error.app_id, error.channel, error.uid) == ("app1", "room", 7)
    assert "\n" not in str(error) and "room" in str(error) and "7" in str(error)
    # Another uid, channel or app is another target.
    await store.create_session(**target(uid=8))
    await store.create_session(**{**target(uid=7), "channel": "room2"})
    # Final and unmanageable sessions do not count.
    await store.create_session(**target(uid=7), phase=Phase.UNMANAGEABLE)
    await store.update_session(first.id, phase=Phase.ENDED)
    second = await store.create_session(**target(uid=7))
    # Bringing the ended one back to life would make two.
    with pytest.raises(StoreConflictError) as caught:
        await store.update_session(first.id, phase=Phase.RUNNING)
    assert (caught.value.app_id, caught.value.channel, caught.value.uid) == ("app1", "room", 7)
    with pytest.raises(StoreConflictError):
        await store.update_session_if(first.id, [Phase.ENDED], phase=Phase.STOPPING)
    assert (await store.get_session(first.id)).phase is Phase.ENDED
    # The store goes on working.
    await store.record_outcome(second.id, phase=Phase.FAILED)
    revived = await store.update_session(first.id, phase=Phase.RUNNING)
    assert revived.phase is Phase.RUNNING


# -- fencing -------------------------------------------------------------------------------------


async def test_fence(store: Store, backend: Backend) -> None:
    """SQLite's writer lock makes it the only writer: `fence` changes nothing. On
    PostgreSQL a store fenced with no App ID (a replica that owns none) writes no
    session at all; reads, and writes that are not a session's, go on."""
    created = await store.create_session(**target())
    intended = await store.record_intent(created.id, Intent.START, phase=Phase.STARTING)
    store.fence({})
    writes: list[Callable[[], Awaitable[SessionRecord | None]]] = [
        lambda: store.create_session(**target(uid=2)),
        lambda: store.update_session(created.id, sid="S1"),
        lambda: store.update_session_if(created.id, [Phase.STARTING], sid="S2"),
        lambda: store.record_intent(created.id, Intent.STOP),
        lambda: store.record_outcome(created.id, phase=Phase.RUNNING),
    ]
    for write in writes:
        if backend.kind == "sqlite":
            assert await write() is not None
        else:
            with pytest.raises(StoreFencedError) as caught:
                await write()
            assert caught.value.app_id == "app1"
    if backend.kind == "postgres":
        assert await store.live_sessions() == [intended]
        # Not in the phase: still refused for the fence, not "not written".
        with pytest.raises(StoreFencedError):
            await store.update_session_if(created.id, [Phase.RUNNING], sid="S3")
    await store.set_manifest_state(ManifestState(name="a"))
    await store.remember_known_good([KnownGood("a", "/r/a.yaml", "ha", {})])
    assert await store.clear_failures() == 0
    assert set(await store.manifest_states()) == {"a"}


# -- readers, closing, version, location ----------------------------------------------------------


async def test_a_reader_reads_but_cannot_write(store: Store, backend: Backend) -> None:
    created = await store.create_session(**target())
    await store.set_manifest_state(ManifestState(name="a", failed_spec_hash="h"))
    await store.remember_known_good([KnownGood("a", "/r/a.yaml", "ha", DOC_A)])
    reader = await backend.open(writer=False)
    assert reader.schema_version == store.schema_version
    assert await reader.get_session(created.id) == created
    assert await reader.live_sessions() == [created]
    assert set(await reader.manifest_states()) == {"a"}
    assert set(await reader.known_good()) == {"a"}
    writes: list[Callable[[], Awaitable[object]]] = [
        lambda: reader.create_session(**target(uid=2)),
        lambda: reader.update_session(created.id, sid="S"),
        lambda: reader.update_session_if(created.id, [Phase.ACQUIRING], sid="S"),
        lambda: reader.record_intent(created.id, Intent.ACQUIRE),
        lambda: reader.record_outcome(created.id, resource_id="R"),
        lambda: reader.set_manifest_state(ManifestState(name="b")),
        lambda: reader.clear_failures(),
        lambda: reader.remember_known_good([], forget=["a"]),
        lambda: reader.restore_if_removed(),
    ]
    for write in writes:
        with pytest.raises(StoreError, match="read-only"):
            await write()
    assert await store.get_session(created.id) == created
    assert set(await store.known_good()) == {"a"}
    assert (await store.manifest_states())["a"].failed_spec_hash == "h"


async def test_closed_store(backend: Backend) -> None:
    store = await backend.open(create=True)
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.get_session(1)
    with pytest.raises(StoreError, match="closed"):
        await store.live_sessions()
    reopened = await backend.open()
    assert await reopened.live_sessions() == []


async def test_schema_version_and_restore(store: Store) -> None:
    assert isinstance(store.schema_version, int) and store.schema_version >= 1
    assert await store.restore_if_removed() is False


async def test_a_store_survives_reopening(store: Store, backend: Backend) -> None:
    created = await store.create_session(**EVERY_FIELD)
    version = store.schema_version
    await store.aclose()
    reopened = await backend.open()
    assert reopened.schema_version == version
    assert await reopened.get_session(created.id) == created


async def test_location_names_the_store_without_a_password(
    store: Store, backend: Backend, request: pytest.FixtureRequest
) -> None:
    location = store.location
    assert isinstance(location, str) and "\n" not in location
    if backend.kind == "sqlite":
        assert location.endswith("state.db")
    else:
        assert location.startswith("postgresql://") and location.endswith(
            backend.url.rsplit("/", 1)[1]
        )
        assert "@127.0.0.1:" in location
        password = backend.url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        assert password and password not in location
        assert location != backend.url
