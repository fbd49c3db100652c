"""How the PostgreSQL store (postgres.py) and its replicas' ownership (ownership.py)
reach the server: the URL (what to connect with, what to show, what to hide), the
settings of every connection, and psycopg's errors as StoreErrors.

Must never: let a password reach a message (`PostgresTarget.location` and `redact`
drop every form of it), or let a psycopg exception out as itself.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection, errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from orchestrator.state.errors import (
    StoreAccessError,
    StoreCorruptError,
    StoreError,
    StoreUnavailableError,
)

#: Seconds to establish a connection (libpq's `connect_timeout`), unless the URL sets it.
CONNECT_TIMEOUT = 5
#: The server-side bound on any one statement (a lock wait included), in `configure`.
STATEMENT_TIMEOUT = "30s"


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


class PostgresTarget:
    """A PostgreSQL URL: what to connect with (`url`, `kwargs`), what to show
    (`location`), what to hide (`redact`)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            # Never echo the URL: it may hold a password.
            raise StoreError(
                f"unsupported PostgreSQL URL scheme {parts.scheme!r}: use "
                "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
            )
        userinfo, at, hosts = parts.netloc.rpartition("@")
        if "@" in userinfo or "@" in parts.path + parts.query + parts.fragment:
            # A password holding '@', '/', '?' or '#' as they are: libpq and this split
            # would read it differently, and a part of it would be shown as a host or a
            # path. Neither the URL nor a part of it is shown.
            raise StoreError(
                "invalid PostgreSQL URL (not shown: it may hold a password): write any "
                "'@', '/', '?' or '#' of its user or password percent-encoded (%40, %2F, "
                "%3F, %23), or keep the password out of it (a password file, PGPASSFILE)"
            )
        user, colon, password = userinfo.partition(":")
        secrets: set[str] = set()
        if colon and password:
            secrets |= {password, unquote(password)}
        query = parse_qsl(parts.query, keep_blank_values=True)
        for key, value in query:
            if key == "password" and value:
                secrets |= {value, quote(value, safe=""), quote_plus(value)}
        kept = urlencode([(k, v) for k, v in query if k != "password"])
        netloc = f"{user}@{hosts}" if at and user else hosts
        self.url = url
        self.location = urlunsplit((parts.scheme, netloc, parts.path, kept, ""))
        # Longest first, so that no part of a password survives a shorter replacement.
        self._secrets = sorted((s for s in secrets if s), key=len, reverse=True)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StoreError(
                f"invalid PostgreSQL URL {self.location}: {self.redact(str(exc))}"
            ) from None
        self.kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            self.kwargs["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in params:
            self.kwargs["application_name"] = "orchestrator"
        # Text as text whatever the database's encoding (SQL_ASCII, `initdb`'s default
        # under the C locale, would hand every string back as bytes).
        self.kwargs["client_encoding"] = "UTF8"

    def redact(self, text: str) -> str:
        """`text` on one line, without any form of the password."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _one_line(text)


def store_error(target: PostgresTarget, exc: psycopg.Error) -> StoreError:
    """The StoreError for a psycopg exception, by its kind and SQLSTATE."""
    location = target.location
    detail = target.redact(str(exc) or type(exc).__name__)
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return StoreAccessError(
            location,
            f"state store {location} cannot be written: {detail}; point the URL at the "
            "primary server, not a read-only standby",
        )
    if isinstance(exc, errors.InsufficientPrivilege):
        return StoreAccessError(
            location,
            f"state store {location} refuses this role: {detail}; grant it the privileges "
            "`orchestrator init` gave its own role, or use that role",
        )
    if isinstance(exc, errors.UndefinedTable | errors.UndefinedColumn):
        return StoreCorruptError(location, f"lacks part of the orchestrator schema ({detail})")
    if isinstance(exc, psycopg.OperationalError):
        return StoreUnavailableError(location, detail)
    return StoreError(f"state store {location} failed: {detail}")


async def configure(conn: AsyncConnection[TupleRow]) -> None:
    """Every connection: statements bounded, datetimes in UTC."""
    await conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'; SET TimeZone = 'UTC'")


async def configure_reader(conn: AsyncConnection[TupleRow]) -> None:
    """A reader's connection also refuses writes (like SQLite's `query_only`)."""
    await conn.execute(
        f"SET statement_timeout = '{STATEMENT_TIMEOUT}'; SET TimeZone = 'UTC'; "
        "SET default_transaction_read_only = on"
    )
