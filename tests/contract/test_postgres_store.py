"""What only the PostgreSQL store has to get right, on a real throwaway server.

Covers: writers starting together migrate once (under the advisory lock, which a
test holds to see a writer wait for it); the schema's native types and its partial
unique index; two replicas cannot both own one target; a database without our
schema is refused unless creating (and left as it was), as is one with foreign
tables of our names; an older schema is upgraded by a writer and refused by a
reader, a newer one refused by both; a server that is down is
StoreUnavailableError within a bounded time, at open and in an operation, and the
same store works again once it is back; connections the server cut are replaced;
the location drops the password (in the user part or the query); no message ever
holds the password, and each is one line; a writer's role lacking a privilege it
needs is refused at open, naming each one missing; a replica reads again only the
newest finished sessions whose row version changed, and its reads never overlap (a
late one would put back an older version).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import pytest

from orchestrator.state import Intent, Phase, SessionRecord, queries
from orchestrator.state import postgres as pg
from orchestrator.state.errors import (
    StoreConflictError,
    StoreCorruptError,
    StoreError,
    StoreMissingError,
    StoreUnavailableError,
)
from orchestrator.state.postgres import (
    ADVISORY_LOCK_KEY,
    POOL_TIMEOUT,
    PostgresStore,
    open_postgres_store,
)
from tests.harness.processes import child_env, run_cli
from tests.postgres import PostgresCluster, database_name

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
WAIT = 30.0  # seconds; a bound for a loaded machine, never reached when it works

_T = TypeVar("_T")


def target(uid: int = 527841, manifest: str = "standup") -> dict[str, Any]:
    return {
        "manifest": manifest,
        "app": "main",
        "app_id": "app1",
        "channel": "room",
        "uid": uid,
        "mode": "mix",
    }


def password_of(url: str) -> str:
    return unquote(url.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1])


def assert_clean(error: BaseException, *secrets: str) -> None:
    """One line, and no form of any secret."""
    message = str(error)
    assert message and "\n" not in message, message
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            assert form not in message, message


async def bounded(awaitable: Awaitable[_T]) -> _T:
    return await asyncio.wait_for(awaitable, WAIT)


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    opened = await open_postgres_store(postgres_url, create=True)
    try:
        yield opened
    finally:
        await opened.aclose()


def scalar(cluster: PostgresCluster, url: str, query: str) -> Any:
    with cluster.admin(database_name(url)) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


# -- migrations -------------------------------------------------------------------------


async def test_writers_starting_together_migrate_once(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    results = await bounded(
        asyncio.gather(
            *(open_postgres_store(postgres_url, create=True) for _ in range(4)),
            return_exceptions=True,
        )
    )
    stores = [r for r in results if isinstance(r, PostgresStore)]
    try:
        assert len(stores) == 4, results
        assert {s.schema_version for s in stores} == {queries.latest_version()}
        with postgres_cluster.admin(database_name(postgres_url)) as conn:
            rows = conn.execute("SELECT version FROM schema_version").fetchall()
        assert rows == [(queries.latest_version(),)]
        # Every replica writes and sees the others' writes.
        for uid, replica in enumerate(stores, start=1):
            await replica.create_session(**target(uid))
        for replica in stores:
            assert [s.uid for s in await replica.live_sessions()] == [1, 2, 3, 4]
        # Two replicas cannot both own one target.
        with pytest.raises(StoreConflictError):
            await stores[3].create_session(**target(1))
    finally:
        for opened in stores:
            await opened.aclose()


async def test_a_database_of_any_encoding_reads_back_text(
    postgres_cluster: PostgresCluster,
) -> None:
    # SQL_ASCII is what `initdb` gives a cluster under the C locale without --encoding.
    name = postgres_cluster.create_database()
    postgres_cluster.drop_database(name)
    with postgres_cluster.admin() as conn:
        conn.execute(
            f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
            f"TEMPLATE template0 OWNER {postgres_cluster.role}"
        )
    store = await open_postgres_store(postgres_cluster.url(name), create=True)
    try:
        created = await store.create_session(**target(), intent=Intent.ACQUIRE)
        (read,) = await store.live_sessions()
        assert read == created and read.phase is Phase.ACQUIRING
    finally:
        await store.aclose()
        postgres_cluster.drop_database(name)


async def test_a_writer_migrates_under_the_advisory_lock(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    opening: asyncio.Task[PostgresStore] | None = None
    try:
        with postgres_cluster.admin(database_name(postgres_url)) as holder:
            holder.execute("BEGIN")
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
            opening = asyncio.create_task(open_postgres_store(postgres_url, create=True))
            done, _ = await asyncio.wait({opening}, timeout=1.0)
            assert not done, "the writer did not wait for the migration lock"
            assert scalar(postgres_cluster, postgres_url, "SELECT to_regclass('sessions')") is None
            holder.execute("COMMIT")
        store = await bounded(opening)
        assert store.schema_version == queries.latest_version()
        stored = scalar(postgres_cluster, postgres_url, "SELECT version FROM schema_version")
        assert stored == queries.latest_version()
    finally:
        if opening is not None:
            opened = await bounded(asyncio.gather(opening, return_exceptions=True))
            if isinstance(opened[0], PostgresStore):
                await opened[0].aclose()


async def test_native_types_and_indexes(
    postgres_cluster: PostgresCluster, store: PostgresStore, postgres_url: str
) -> None:
    with postgres_cluster.admin(database_name(postgres_url)) as conn:
        columns = {
            (str(table), str(name)): (data_type, identity)
            for table, name, data_type, identity in conn.execute(
                "SELECT table_name, column_name, data_type, identity_generation "
                "FROM information_schema.columns WHERE table_schema = 'public'"
            ).fetchall()
        }
        indexes = {
            str(name): str(definition)
            for name, definition in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sessions'"
            ).fetchall()
        }
    tz = "timestamp with time zone"
    assert columns["sessions", "id"] == ("bigint", "ALWAYS")
    for name in ("created_at", "updated_at", "window_start", "ended_at", "intent_at"):
        assert columns["sessions", name][0] == tz, name
    assert columns["sessions", "file_list"][0] == "jsonb"
    assert columns["sessions", "uid"][0] == "bigint"
    assert columns["sessions", "last_status"][0] == "integer"
    assert columns["sessions", "restart_count"][0] == "integer"
    assert columns["sessions", "phase"][0] == "text"
    assert columns["manifest_states", "failed_at"][0] == tz
    assert columns["last_known_good", "document"][0] == "jsonb"
    assert columns["last_known_good", "stored_at"][0] == tz
    assert {t for t, _ in columns} == {
        "sessions",
        "manifest_states",
        "last_known_good",
        "schema_version",
        "app_owners",
        "notices",
        "latest_finished",
    }
    assert columns["app_owners", "epoch"][0] == "bigint"
    assert columns["notices", "body"][0] == "jsonb"
    assert columns["notices", "received_at"][0] == tz
    assert columns["sessions", "confirm_until"][0] == tz
    for _, name in columns:
        assert not any(p in name.replace("_", "") for p in ("secret", "token", "password"))
    live = indexes[queries.LIVE_TARGET_INDEX]
    assert "UNIQUE" in live and "(app_id, channel, uid)" in live
    for phase in ("ended", "failed", "unmanageable"):
        assert f"'{phase}'" in live
    assert "sessions_by_phase" in indexes and "sessions_by_manifest" in indexes
    assert "sessions_by_sid" in indexes and "sessions_unconfirmed" in indexes


async def test_no_schema_without_create_is_refused_and_left_alone(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    for writer in (True, False):
        with pytest.raises(StoreMissingError) as caught:
            await bounded(open_postgres_store(postgres_url, writer=writer))
        message = str(caught.value)
        assert "`orchestrator init`" in message
        assert database_name(postgres_url) in message
        assert_clean(caught.value, password_of(postgres_url))
    tables = scalar(
        postgres_cluster,
        postgres_url,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    )
    assert tables == 0
    with pytest.raises(ValueError, match="only a writer creates"):
        await open_postgres_store(postgres_url, writer=False, create=True)


async def test_foreign_tables_of_our_names_are_not_taken_for_a_store(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    with postgres_cluster.admin(database_name(postgres_url)) as conn:
        conn.execute("CREATE TABLE sessions (theirs integer)")
    for writer, create in ((True, True), (True, False), (False, False)):
        with pytest.raises(StoreCorruptError, match="not an orchestrator state store"):
            await bounded(open_postgres_store(postgres_url, writer=writer, create=create))
    assert scalar(postgres_cluster, postgres_url, "SELECT to_regclass('schema_version')") is None
    assert scalar(postgres_cluster, postgres_url, "SELECT count(*) FROM sessions") == 0


@contextlib.contextmanager
def login_role(
    cluster: PostgresCluster, url: str, prefix: str, *grants: str
) -> Iterator[tuple[str, str, str]]:
    """A role of its own that logs in with a password, given `grants` (`{role}` in each
    stands for it): (its name, its password, `url` as it); dropped afterwards."""
    role, password = f"{prefix}_{secrets.token_hex(4)}", f"{prefix}-pw"
    database = database_name(url)
    as_role = url.replace(url.split("://", 1)[1].rsplit("@", 1)[0], f"{role}:{password}")
    with cluster.admin(database) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        with cluster.admin(database) as conn:
            for grant in grants:
                conn.execute(grant.format(role=role))
        yield role, password, as_role
    finally:
        with cluster.admin(database) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


async def test_a_writer_role_without_a_privilege_it_needs_is_refused_naming_it(
    postgres_cluster: PostgresCluster, postgres_url: str, store: PostgresStore
) -> None:
    """A replica that logs in as a role of its own: each privilege a writer uses is
    checked on its own (has_table_privilege with several is true when any one is
    held), the ones missing are named, and once granted the role writes sessions,
    which the triggers keep in `latest_finished` as that role."""
    tables = ", ".join(pg._WRITER_PRIVILEGES)
    with login_role(
        postgres_cluster,
        postgres_url,
        "orch_replica",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {{role}}",
        "GRANT SELECT ON schema_version TO {role}",
        "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
        "REVOKE INSERT ON latest_finished FROM {role}",
        "REVOKE DELETE ON notices FROM {role}",
    ) as (role, password, replica_url):
        with pytest.raises(StoreError, match="cannot be written by this role") as refused:
            await bounded(open_postgres_store(replica_url))
        message = str(refused.value)
        assert "lacks INSERT on latest_finished, DELETE on notices;" in message
        assert_clean(refused.value, password, password_of(postgres_url))
        with postgres_cluster.admin(database_name(postgres_url)) as conn:
            conn.execute(f"GRANT INSERT ON latest_finished TO {role}")
            conn.execute(f"GRANT DELETE ON notices TO {role}")
        replica = await bounded(open_postgres_store(replica_url))
        try:
            created = await replica.create_session(**target())
            ended = await replica.record_outcome(created.id, phase=Phase.ENDED, ended_at=T0)
            assert await replica.latest_ended() == {"standup": ended}
        finally:
            await replica.aclose()
        assert await store.latest_ended() == {"standup": ended}


async def test_a_cli_reader_refused_a_table_says_so_in_one_line(
    postgres_cluster: PostgresCluster,
    postgres_url: str,
    store: PostgresStore,
    tmp_path: Path,
) -> None:
    """Defect: `status` as a role that may not read `last_known_good` printed a
    traceback (the store's error escaped the read); it is one line, exit 1."""
    with login_role(
        postgres_cluster,
        postgres_url,
        "orch_reader",
        "GRANT SELECT ON sessions, manifest_states, schema_version TO {role}",
    ) as (_, password, reader_url):
        (tmp_path / "manifests").mkdir()
        args = ("status", "--state", reader_url, "--manifests", str(tmp_path / "manifests"))
        done = await run_cli(args, env=child_env(), cwd=tmp_path)
    assert done.code == 1, done
    assert "Traceback" not in done.stderr and password not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and "last_known_good" in line


def counting_decodes(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of the sessions decoded from now on (the codec is the dialect's, shared
    by every store of this process: count only around the reads that matter)."""
    decoded: list[int] = []
    decode = store._codec.session

    def counting(row: Any) -> Any:
        record = decode(row)
        decoded.append(record.id)
        return record

    monkeypatch.setattr(store._codec, "session", counting)
    return decoded


async def test_a_replica_reads_again_only_the_finished_sessions_that_changed(
    store: PostgresStore, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica's `latest_ended` asks for each newest finished session's id and row
    version, and reads and decodes only those whose version is not the one it kept:
    none when nothing changed; the one another replica finished or wrote again;
    none of another App ID's when asked for its own."""
    decoded = counting_decodes(store, monkeypatch)

    async def ask(*app_ids: str) -> tuple[dict[str, SessionRecord], list[int]]:
        """The answer, and the ids of the sessions decoded to make it."""
        decoded.clear()
        answer = await store.latest_ended(app_ids or None)
        return answer, sorted(decoded)

    other = await open_postgres_store(postgres_url)
    try:
        finished = {}
        for n, app_id in enumerate(["app1"] * 4 + ["app2"] * 2):
            created = await other.create_session(**{**target(n + 1, f"m{n}"), "app_id": app_id})
            finished[created.id] = await other.record_outcome(
                created.id, phase=Phase.ENDED, ended_at=T0
            )
        everything = {s.manifest: s for s in finished.values()}
        assert await ask() == (everything, sorted(finished))
        assert await ask() == (everything, [])
        # Another replica finishes a newer session of m0 and writes m1's again.
        newer = await other.create_session(**target(10, "m0"))
        newer = await other.record_outcome(newer.id, phase=Phase.FAILED, ended_at=T0)
        m1 = next(s for s in finished.values() if s.manifest == "m1")
        m1 = await other.update_session(m1.id, end_reason="confirmed")
        latest = {**everything, "m0": newer, "m1": m1}
        assert await ask() == (latest, sorted([newer.id, m1.id]))
        of_app2 = {name: s for name, s in latest.items() if s.app_id == "app2"}
        assert await ask("app2") == (of_app2, [])
        assert await ask() == (latest, [])
    finally:
        await other.aclose()


class _WatchedLock(asyncio.Lock):
    """A lock that tells when someone waits for it."""

    def __init__(self) -> None:
        super().__init__()
        self.contended = asyncio.Event()

    async def acquire(self) -> bool:
        if self.locked():
            self.contended.set()
        return await super().acquire()


async def test_a_replica_read_that_ends_late_never_puts_back_an_older_version(
    store: PostgresStore, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two reads of one replica, the first held after it read a session and before
    it kept it, while another replica writes that session again and the second read
    begins: the second waits for the first, so what is kept in the end is the newest
    version, and the next read decodes nothing. (Were they to overlap, the first
    would put back the version it read, older than the second's.)"""
    other = await open_postgres_store(postgres_url)
    try:
        created = await other.create_session(**target(1, "m0"))
        session = await other.record_outcome(created.id, phase=Phase.ENDED, ended_at=T0)
        await store.latest_ended()  # everything kept
        session = await other.update_session(session.id, end_reason="first")

        read = store._read
        held, release = asyncio.Event(), asyncio.Event()
        calls = 0

        async def holding_the_first(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            rows = await read(*args)
            if calls == 1:  # the first read's sessions: read, not kept yet
                held.set()
                await release.wait()
            return rows

        monkeypatch.setattr(store, "_read", holding_the_first)
        assert store._versions is not None
        lock = _WatchedLock()
        monkeypatch.setattr(store._versions, "lock", lock)
        first = asyncio.create_task(store.latest_ended())
        second: asyncio.Task[dict[str, SessionRecord]] | None = None
        try:
            await asyncio.wait_for(held.wait(), WAIT)
            newest = await other.update_session(session.id, end_reason="second")
            second = asyncio.create_task(store.latest_ended())
            # The second read waits for the lock (or, were there none, is done).
            contended = asyncio.create_task(lock.contended.wait())
            await asyncio.wait({second, contended}, timeout=WAIT, return_when="FIRST_COMPLETED")
            contended.cancel()
            assert lock.contended.is_set() and not second.done()
            release.set()
            assert (await asyncio.wait_for(first, WAIT))["m0"].end_reason == "first"
            assert await asyncio.wait_for(second, WAIT) == {"m0": newest}
        finally:
            release.set()
            for task in (first, second):
                if task is not None and not task.done():
                    task.cancel()
        decoded = counting_decodes(store, monkeypatch)
        assert await store.latest_ended() == {"m0": newest}
        assert decoded == []
    finally:
        await other.aclose()


async def test_an_older_schema_is_upgraded_by_a_writer_only(
    postgres_cluster: PostgresCluster, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await open_postgres_store(postgres_url, create=True)
    created = await first.create_session(**target())
    await first.aclose()
    latest = queries.latest_version() + 1
    extra = ("CREATE TABLE test_extra (x integer)", "CREATE INDEX ON test_extra (x)")
    newer = queries.Migration(latest, "a test's", sqlite=extra, postgres=extra)
    monkeypatch.setattr(queries, "MIGRATIONS", (*queries.MIGRATIONS, newer))
    with pytest.raises(StoreError, match=rf"older than this orchestrator's \({latest}\)"):
        await open_postgres_store(postgres_url, writer=False)
    writer = await open_postgres_store(postgres_url)
    try:
        assert writer.schema_version == latest
        assert await writer.get_session(created.id) == created
    finally:
        await writer.aclose()
    with postgres_cluster.admin(database_name(postgres_url)) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(latest,)]
        assert conn.execute("SELECT to_regclass('test_extra') IS NOT NULL").fetchone() == (True,)
    reader = await open_postgres_store(postgres_url, writer=False)
    assert reader.schema_version == latest
    await reader.aclose()


async def test_an_upgrade_is_laid_by_the_role_that_owns_the_tables(
    postgres_cluster: PostgresCluster, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica's role, even one that may create tables, does not upgrade: the tables
    it made would be its own, and the role that ran `init` locked out of them."""
    first = await open_postgres_store(postgres_url, create=True)
    await first.aclose()
    latest = queries.latest_version() + 1
    extra = ("CREATE TABLE test_extra (x integer)",)
    newer = queries.Migration(latest, "a test's", sqlite=extra, postgres=extra)
    monkeypatch.setattr(queries, "MIGRATIONS", (*queries.MIGRATIONS, newer))
    tables = ", ".join(pg._WRITER_PRIVILEGES)
    with login_role(
        postgres_cluster,
        postgres_url,
        "orch_upgrader",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables}, schema_version TO {{role}}",
        "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
        "GRANT USAGE, CREATE ON SCHEMA public TO {role}",
    ) as (role, _password, replica_url):
        with pytest.raises(StoreError) as refused:
            await bounded(open_postgres_store(replica_url))
        owner = postgres_cluster.role
        assert str(refused.value).endswith(
            f"has schema version {latest - 1}, older than this orchestrator's ({latest}); "
            f"the role that owns its tables ({owner}) must upgrade it (run a writer as that "
            f"role once), not {role}"
        )
        with postgres_cluster.admin(database_name(postgres_url)) as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchall() == [(latest - 1,)]
            assert conn.execute("SELECT to_regclass('test_extra')").fetchone() == (None,)
    writer = await bounded(open_postgres_store(postgres_url))
    assert writer.schema_version == latest
    await writer.aclose()


async def test_a_newer_schema_is_refused(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    await (await open_postgres_store(postgres_url, create=True)).aclose()
    with postgres_cluster.admin(database_name(postgres_url)) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    for writer, create in ((True, True), (True, False), (False, False)):
        with pytest.raises(StoreError, match="schema version 99, newer than this") as caught:
            await open_postgres_store(postgres_url, writer=writer, create=create)
        assert_clean(caught.value, password_of(postgres_url))
    assert scalar(postgres_cluster, postgres_url, "SELECT version FROM schema_version") == 99


# -- the server ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_server_that_is_down_is_unavailable_then_back(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    store = await open_postgres_store(postgres_url, create=True)
    secret = password_of(postgres_url)
    try:
        created = await store.create_session(**target())
        await asyncio.to_thread(postgres_cluster.stop)
        try:
            operations: list[Callable[[], Awaitable[object]]] = [
                store.live_sessions,
                lambda: store.record_intent(created.id, Intent.START, phase=Phase.STARTING),
            ]
            for operation in operations:
                started = time.monotonic()
                with pytest.raises(StoreUnavailableError) as caught:
                    await bounded(operation())
                assert time.monotonic() - started < POOL_TIMEOUT + pg.CONNECT_TIMEOUT + 5
                assert store.location in str(caught.value)
                assert "is unavailable" in str(caught.value)
                assert_clean(caught.value, secret)
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError) as caught:
                await bounded(open_postgres_store(postgres_url))
            assert time.monotonic() - started < pg.CONNECT_TIMEOUT + 5
            assert_clean(caught.value, secret)
        finally:
            await asyncio.to_thread(postgres_cluster.start)
        # The same store reconnects by itself once the server is back.
        deadline = time.monotonic() + WAIT
        while True:
            try:
                live = await store.live_sessions()
                break
            except StoreUnavailableError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        assert live == [created]  # the refused intent was never written
    finally:
        await store.aclose()


async def test_connections_the_server_cut_are_replaced(
    postgres_cluster: PostgresCluster, store: PostgresStore, postgres_url: str
) -> None:
    created = await store.create_session(**target())
    with postgres_cluster.admin() as conn:
        cut = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database_name(postgres_url),),
        ).fetchone()
    assert cut is not None and int(str(cut[0])) >= 1
    assert await bounded(store.get_session(created.id)) == created
    updated = await bounded(store.update_session(created.id, sid="S1"))
    assert updated.sid == "S1"


# -- location and secrets ---------------------------------------------------------------------


async def test_location_drops_the_password(
    postgres_cluster: PostgresCluster, store: PostgresStore, postgres_url: str
) -> None:
    name = database_name(postgres_url)
    port = postgres_cluster.port
    assert store.location == f"postgresql://{postgres_cluster.role}@127.0.0.1:{port}/{name}"
    # A password in the query works, and is dropped too (other parameters are kept).
    secret = quote(postgres_cluster.password, safe="")
    url = (
        f"postgres://{postgres_cluster.role}@127.0.0.1:{port}/{name}"
        f"?password={secret}&application_name=contract"
    )
    reader = await open_postgres_store(url, writer=False)
    try:
        assert reader.location == (
            f"postgres://{postgres_cluster.role}@127.0.0.1:{port}/{name}?application_name=contract"
        )
        assert await reader.live_sessions() == []
    finally:
        await reader.aclose()


async def test_no_message_holds_the_password(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    secret = password_of(postgres_url)
    name = database_name(postgres_url)
    port = postgres_cluster.port
    errors: list[BaseException] = []

    async def fails(awaitable: Awaitable[object]) -> None:
        with pytest.raises(StoreError) as caught:
            await bounded(awaitable)
        errors.append(caught.value)

    await fails(open_postgres_store(postgres_url))  # no schema yet
    wrong = postgres_cluster.url(name, password="Wr0ng:p@ss/w#rd?")
    await fails(open_postgres_store(wrong))
    assert "authentication failed" in str(errors[-1])
    await fails(open_postgres_store(postgres_cluster.url("no_such_database")))
    assert "no_such_database" in str(errors[-1])
    await fails(open_postgres_store(postgres_url + "?no_such_option=1"))
    assert "invalid PostgreSQL URL" in str(errors[-1])
    await fails(open_postgres_store(f"mysql://{postgres_cluster.role}:{quote(secret)}@h/db"))
    assert "unsupported PostgreSQL URL scheme 'mysql'" in str(errors[-1])
    store = await open_postgres_store(postgres_url, create=True)
    reader = await open_postgres_store(postgres_url, writer=False)
    try:
        created = await store.create_session(**target())
        await fails(store.create_session(**target()))  # conflict
        assert isinstance(errors[-1], StoreConflictError)
        await fails(store.create_session(**{**target(2), "mode": None}))  # NOT NULL
        await fails(reader.update_session(created.id, sid="S"))  # read-only
    finally:
        await reader.aclose()
        await store.aclose()
    await fails(store.live_sessions())  # closed
    for error in errors:
        assert_clean(error, secret, "Wr0ng:p@ss/w#rd?")
    assert len(errors) == 9
    for error in errors[:4] + errors[5:]:
        assert f"127.0.0.1:{port}" in str(error), error


async def test_the_clock_given_is_used(postgres_url: str) -> None:
    store = await open_postgres_store(postgres_url, create=True, now=lambda: T0)
    try:
        created = await store.create_session(**target())
        assert created.created_at == created.updated_at == T0
        intended = await store.record_intent(created.id, Intent.ACQUIRE)
        assert intended.intent_at == T0
    finally:
        await store.aclose()
