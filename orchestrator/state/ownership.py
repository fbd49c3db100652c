"""App ID ownership for PostgreSQL replicas: which replica may act on which App ID.

Why it exists: several orchestrator processes share one PostgreSQL store, and the
rate limit of an App ID is exact only if one process calls the API for it. Owning an
App ID is holding a session-level advisory lock on a dedicated connection; each
claim bumps the App ID's epoch in `app_owners`, and the store is told the epochs
this replica holds (`Store.fence`), so that every session write of a replica that
lost an App ID is refused in the same statement (StoreFencedError).

Must never: reach into the store (it tells the store its epochs through `fence`,
the store's API), or let the replica act after its lock connection failed (`lost()`
leaves it owning nothing, and its store fenced off every App ID).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import structlog
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from orchestrator.state.errors import StoreUnavailableError
from orchestrator.state.model import AppOwner
from orchestrator.state.pgconn import CONNECT_TIMEOUT
from orchestrator.state.queries import NOTICE_CHANNEL

log = structlog.get_logger("orchestrator.state")

if TYPE_CHECKING:
    from orchestrator.state.postgres import PostgresStore
    from orchestrator.state.protocol import Ownership

_T = TypeVar("_T")

#: The advisory lock class (first key) of App ID ownership: "ORCH"; the object id
#: (second key) is the App ID's `app_owners.lock_id`.
OWNERSHIP_LOCK_CLASS = 0x4F524348
#: The advisory lock class of replica membership ("MEMB"); the object id is the
#: backend pid of the replica's lock connection, so each live replica holds one.
MEMBERSHIP_LOCK_CLASS = 0x4D454D42
# The two-key advisory locks granted in this database (`l`: pg_locks). They are per
# database: another database's on the same server (another deployment's, whose lock
# ids are numbered from 1 as well) are neither members nor owners here. Built from
# these constants only (S608).
_HELD_HERE = (
    "l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_MEMBERS = (
    "SELECT count(*) FROM pg_locks l "  # noqa: S608
    f"WHERE {_HELD_HERE} AND l.classid = %s::int::oid"
)
_OWNER_LOCK = (
    f"app_owners o LEFT JOIN pg_locks l ON {_HELD_HERE} AND l.classid = %s::int::oid "
    "AND l.objid = o.lock_id::oid"
)
_HOLDERS = (
    "SELECT o.app_id, o.owner, l.pid IS NOT NULL, l.pid = pg_backend_pid() "  # noqa: S608
    f"FROM {_OWNER_LOCK}"
)
#: Who owns what (`Store.app_owners`): app_id, owner, since, held, epoch.
OWNERS = (
    "SELECT o.app_id, o.owner, o.since, l.pid IS NOT NULL, o.epoch "  # noqa: S608
    f"FROM {_OWNER_LOCK} ORDER BY o.app_id"
)
#: TCP keepalive on the lock connection, both ways: the server probes a silent
#: replica after KEEPALIVE_IDLE s, every KEEPALIVE_INTERVAL s, KEEPALIVE_COUNT times,
#: and gives up on unacknowledged data after TCP_USER_TIMEOUT_MS: a replica that
#: vanished (host down, network cut) loses its session, and so its locks, within
#: about LOCK_LOSS_BOUND seconds.
KEEPALIVE_IDLE = 5
KEEPALIVE_INTERVAL = 2
KEEPALIVE_COUNT = 3
TCP_USER_TIMEOUT_MS = 10_000
LOCK_LOSS_BOUND = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT + 4  # 15 s
#: Seconds any statement on the lock connection may take before the replica takes
#: the server for unreachable (and stops acting).
LOCK_STATEMENT_TIMEOUT = 4.0
#: Seconds before a failed LISTEN connection is opened again.
LISTEN_RETRY = 1.0


async def _until(
    work: Awaitable[_T], conn: AsyncConnection[TupleRow], deadline: float, *, keep: bool
) -> _T:
    """`work` on `conn` until `deadline` (the loop's time), else TimeoutError. Past it,
    the connection is closed before the work is cancelled: psycopg would spend up to
    10 s more asking a server that does not answer to cancel the statement.

    A caller cancelled meanwhile: with `keep` (work that changes nothing on the
    server), the statement is cancelled on the server and the connection kept, up to
    `deadline`; otherwise, or past it, the connection is closed first (whatever the
    work did there, a lock taken, goes with the session)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    try:
        done, _ = await asyncio.wait({task}, timeout=deadline - loop.time())
    except asyncio.CancelledError:
        if keep:
            task.cancel()
            await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
        await _ended(task, conn)
        raise
    if task in done:
        return task.result()
    await _ended(task, conn)
    raise TimeoutError


async def _ended(task: asyncio.Future[_T], conn: AsyncConnection[TupleRow]) -> None:
    """`task` ended: at once if it has (what it raised retrieved: the caller says
    why), else by closing `conn` under it and cancelling it."""
    if not task.done():
        await conn.close()
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled():
        task.exception()


class PostgresOwnership:
    """This replica's App IDs: session-level advisory locks on a dedicated connection.

    Holding `(OWNERSHIP_LOCK_CLASS, lock_id)` is owning the App ID; claiming it bumps
    its epoch in `app_owners`, which the store then requires of every session write
    for that App ID (fencing: this object tells the store its epochs through
    `fence`). Replicas count each other by their membership locks. The connection
    has TCP keepalive set on both ends, so that a vanished replica's session, and
    its locks, end within LOCK_LOSS_BOUND s.
    Any failure of the connection is StoreUnavailableError: the caller then takes
    itself for owning nothing (`lost()`) and reconnects later.
    """

    def __init__(self, store: PostgresStore, name: str) -> None:
        self._store = store
        self._target = store.target
        self.name = name
        self._conn: AsyncConnection[TupleRow] | None = None
        self._owned: dict[str, int] = {}  # App ID -> epoch of our claim
        self._lock = asyncio.Lock()

    @property
    def owned(self) -> frozenset[str]:
        return frozenset(self._owned)

    def _kwargs(self, role: str) -> dict[str, Any]:
        """A dedicated connection's settings: TCP keepalive both ways (a vanished
        server or replica is noticed within LOCK_LOSS_BOUND s), named for `role`."""
        kwargs = dict(self._target.kwargs)
        kwargs.update(
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE,
            keepalives_interval=KEEPALIVE_INTERVAL,
            keepalives_count=KEEPALIVE_COUNT,
            tcp_user_timeout=TCP_USER_TIMEOUT_MS,
            application_name=f"orchestrator {role}{self.name}"[:63],
        )
        return kwargs

    async def _connection(self, deadline: float) -> AsyncConnection[TupleRow]:
        """The lock connection, opened (and its membership lock taken) if need be, by
        `deadline` (the loop's time)."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self._conn is not None:  # closed under us: its session, and locks, are gone
            self._conn = None
            self.lost()
        async with asyncio.timeout_at(deadline):
            conn = await AsyncConnection.connect(self._target.url, **self._kwargs(""))

        async def set_up() -> None:
            await conn.execute(
                f"SET TimeZone = 'UTC'; SET statement_timeout = "
                f"'{int(LOCK_STATEMENT_TIMEOUT)}s'; "
                f"SET tcp_keepalives_idle = {KEEPALIVE_IDLE}; "
                f"SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL}; "
                f"SET tcp_keepalives_count = {KEEPALIVE_COUNT}; "
                f"SET tcp_user_timeout = {TCP_USER_TIMEOUT_MS}"
            )
            await conn.execute(
                "SELECT pg_advisory_lock(%s::int, pg_backend_pid())", (MEMBERSHIP_LOCK_CLASS,)
            )

        try:
            await _until(set_up(), conn, deadline, keep=False)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def _do(
        self,
        operation: Callable[[AsyncConnection[TupleRow]], Awaitable[_T]],
        statements: int = 1,
        *,
        reads: bool = False,
    ) -> _T:
        """Run `operation` (of at most `statements` statements; `reads`: it changes
        nothing on the server) on the lock connection, bounded; a failure means every
        lock may be gone: the connection is dropped and StoreUnavailableError raised.

        The bound counts from the call, its wait for the connection's turn included:
        LOCK_STATEMENT_TIMEOUT a statement (+1 s), with CONNECT_TIMEOUT and the
        connection's two statements more where it connects. A caller cancelled keeps
        the connection after an operation that `reads` (within the bound), else it is
        closed: its locks go with it, and the replica owns nothing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_STATEMENT_TIMEOUT * statements + 1
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
            try:
                if self._conn is None or self._conn.closed:
                    deadline += CONNECT_TIMEOUT + 2 * LOCK_STATEMENT_TIMEOUT
                conn = await self._connection(deadline)
                return await _until(operation(conn), conn, deadline, keep=reads)
            finally:
                self._lock.release()
        except (psycopg.Error, TimeoutError) as exc:
            await self._drop()
            detail = self._target.redact(str(exc) or "no answer in time")
            raise StoreUnavailableError(self._target.location, detail) from None
        except asyncio.CancelledError:
            if self._conn is not None and self._conn.closed:  # its locks are gone
                self._conn = None
                self.lost()
            raise

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.lost()
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 1.0)

    def lost(self) -> None:
        """Own nothing from now on (the lock connection failed or is closed)."""
        self._owned.clear()
        self._store.fence({})

    async def survey(self) -> tuple[int, dict[str, str | None]]:
        """(live replicas, App ID -> holder's replica name or None when nobody holds
        it), for the App IDs in `app_owners`; also checks that our locks still stand."""

        async def look(conn: AsyncConnection[TupleRow]) -> tuple[int, dict[str, str | None]]:
            cursor = await conn.execute(
                _MEMBERS,
                (MEMBERSHIP_LOCK_CLASS,),
            )
            members = await cursor.fetchone()
            cursor = await conn.execute(
                _HOLDERS,
                (OWNERSHIP_LOCK_CLASS,),
            )
            holders: dict[str, str | None] = {}
            for app_id, owner, held, mine in await cursor.fetchall():
                holders[app_id] = owner if held else None
                if app_id in self._owned and not mine:
                    self._owned.pop(app_id)  # not ours any more: stop acting on it
            return (int(members[0]) if members else 1), holders

        count, holders = await self._do(look, statements=2, reads=True)
        self._store.fence(self._owned)
        return max(count, 1), holders

    async def check(self) -> None:
        """That the lock connection still answers (and so our locks stand); a failure
        leaves us owning nothing (StoreUnavailableError)."""
        if not self._owned:
            return

        async def ping(conn: AsyncConnection[TupleRow]) -> None:
            await conn.execute("SELECT 1")

        await self._do(ping, reads=True)

    async def claim(self, app_id: str) -> bool:
        """Try to own `app_id` (never waits for another replica); True when owned now."""

        async def take(conn: AsyncConnection[TupleRow]) -> int | None:
            await conn.execute(
                "INSERT INTO app_owners (app_id) VALUES (%s) ON CONFLICT (app_id) DO NOTHING",
                (app_id,),
            )
            cursor = await conn.execute(
                "SELECT lock_id FROM app_owners WHERE app_id = %s", (app_id,)
            )
            row = await cursor.fetchone()
            assert row is not None
            cursor = await conn.execute(
                "SELECT pg_try_advisory_lock(%s::int, %s::int)", (OWNERSHIP_LOCK_CLASS, row[0])
            )
            got = await cursor.fetchone()
            if not got or not got[0]:
                return None
            cursor = await conn.execute(
                "UPDATE app_owners SET owner = %s, epoch = epoch + 1, since = now() "
                "WHERE app_id = %s RETURNING epoch",
                (self.name, app_id),
            )
            epoch = await cursor.fetchone()
            assert epoch is not None
            return int(epoch[0])

        if app_id in self._owned:
            return True
        epoch = await self._do(take, statements=4)
        if epoch is None:
            return False
        self._owned[app_id] = epoch
        self._store.fence(self._owned)
        return True

    async def release(self, app_id: str) -> None:
        """Stop owning `app_id` (a hand-over: its recordings go on; another replica
        adopts them)."""
        epoch = self._owned.pop(app_id, None)
        self._store.fence(self._owned)
        if epoch is None:
            return

        async def unlock(conn: AsyncConnection[TupleRow]) -> None:
            await conn.execute(
                "SELECT pg_advisory_unlock(%s::int, lock_id) FROM app_owners WHERE app_id = %s",
                (OWNERSHIP_LOCK_CLASS, app_id),
            )

        await self._do(unlock)

    async def listen(self, wake: Callable[[str], None]) -> None:
        """Until cancelled: `wake(app_id)` for every notification a replica keeps (its
        NOTIFY on NOTICE_CHANNEL carries the App ID), on a connection of its own.
        `wake("")` each time listening (re)starts: what was kept while nobody listened
        is acted on then. A failed connection is opened again after LISTEN_RETRY s; the
        first failure is a warning, the tries after it debug lines until it listens
        again (a server down for a minute is one warning, not sixty)."""
        failing = False
        while True:
            conn: AsyncConnection[TupleRow] | None = None
            try:
                # The target's settings are autocommit already: a LISTEN takes effect
                # at once, and notifications arrive between statements.
                conn = await AsyncConnection.connect(self._target.url, **self._kwargs("listen "))
                await conn.execute(f"LISTEN {NOTICE_CHANNEL}")
                if failing:
                    log.info("store.listening_again")
                    failing = False
                wake("")
                async for notify in conn.notifies():
                    wake(notify.payload)
            except Exception as exc:  # any failure: listen again (passes still run)
                (log.debug if failing else log.warning)(
                    "store.listen_failed",
                    error=self._target.redact(str(exc) or type(exc).__name__),
                    retry_s=LISTEN_RETRY,
                )
                failing = True
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(asyncio.wait_for(conn.close(), 1.0))
            await asyncio.sleep(LISTEN_RETRY)

    async def owners(self) -> list[AppOwner]:
        """Every App ID's owner as recorded, and whether its lock is held now."""
        return await self._store.app_owners()

    async def aclose(self) -> None:
        """Release everything: the locks first, so that the other replicas see them go
        at once (the server ends a closed connection's session, and so its locks, a
        moment after the close), then the connection."""
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.closed:
                deadline = asyncio.get_running_loop().time() + LOCK_STATEMENT_TIMEOUT
                with contextlib.suppress(psycopg.Error, TimeoutError):
                    unlock = conn.execute("SELECT pg_advisory_unlock_all()")
                    await _until(unlock, conn, deadline, keep=False)
            await self._drop()


if TYPE_CHECKING:

    def _implements_ownership(ownership: PostgresOwnership) -> Ownership:
        """mypy checks here that PostgresOwnership keeps the Ownership protocol."""
        return ownership
