"""A throwaway PostgreSQL cluster for tests (a pytest plugin, see tests/conftest.py).

Fixtures:
- `postgres_cluster` (session): a cluster initialised in a fresh temporary
  directory and started with `pg_ctl` on a free 127.0.0.1 port, stopped (and its
  directory removed) at the end of the session. Its `stop()` and `start()` take
  the server down and bring it back on the same port (for "server down" tests);
  `url(dbname)` is a URL for the test role, which has a password so that tests can
  check it never leaks; `create_database()` / `drop_database(name)` manage
  databases owned by that role.
- `postgres_url` (function): a fresh database per test, dropped afterwards; the
  value is `postgresql://USER:PASSWORD@127.0.0.1:PORT/DBNAME`. A test that reaches
  it without the `postgres` marker fails (tests/conftest.py marks the tests that
  request a fixture of this module; one reached by `getfixturevalue` is not seen).

The binaries come from `pg_config --bindir`, else the newest
/usr/lib/postgresql/*/bin. Without them (or, when running as root, without a
`postgres` OS user to run the server as) tests that need the cluster are skipped,
saying why; with ORCHESTRATOR_REQUIRE_POSTGRES=1 they fail instead (CI sets it
where PostgreSQL must be tested).

Every wait is bounded; at the end only the postmaster this plugin started is ever
signalled, by its pid, and only if `pg_ctl stop` did not stop it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

REQUIRE_FLAG = "ORCHESTRATOR_REQUIRE_POSTGRES"
SERVER_USER = "postgres"  # the OS user the server runs as when tests run as root
SUPERUSER = "postgres"  # the cluster's bootstrap superuser (trusted on the socket only)
TEST_ROLE = "orch_test"
START_TIMEOUT = 60.0  # seconds; bounds for a loaded machine, never reached when it works
STOP_TIMEOUT = 30.0
COMMAND_TIMEOUT = 120.0

_PG_ENV_PREFIX = "PG"  # PGDATA, PGPORT, PGPASSWORD... must not steer the cluster


def find_bindir() -> tuple[Path | None, str]:
    """The directory holding initdb and pg_ctl, or None and why not."""
    tried: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            tried.append(f"`pg_config --bindir` failed ({exc})")
        else:
            if _has_server(Path(out)):
                return Path(out), ""
            tried.append(f"`pg_config --bindir` gives {out}, which lacks initdb or pg_ctl")
    else:
        tried.append("no pg_config on PATH")
    candidates = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        with contextlib.suppress(ValueError):
            candidates.append((float(path.parent.name), path))
    for _, path in sorted(candidates, reverse=True):
        if _has_server(path):
            return path, ""
    tried.append("none in /usr/lib/postgresql/*/bin")
    return None, "; ".join(tried)


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    """One PostgreSQL cluster in `root` (data, socket and log), run by `os_user`
    (None: the current user)."""

    def __init__(self, bindir: Path, root: Path, os_user: str | None) -> None:
        self.bindir = bindir
        self.root = root
        self.os_user = os_user
        self.datadir = root / "data"
        self.socket_dir = root / "sock"
        self.logfile = root / "server.log"
        self.port = _free_port()
        self.role = TEST_ROLE
        # Characters that need quoting in a URL, so that tests see them handled.
        self.password = f"pw:{secrets.token_hex(8)}@/?#"
        self._pid: int | None = None

    # -- running commands as the server's user -------------------------------------

    def _run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PG_ENV_PREFIX)}
        env["LC_ALL"] = "C"
        with (self.root / "commands.log").open("ab") as log:
            result = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=env,
                user=self.os_user,
                group=None if self.os_user is None else pwd.getpwnam(self.os_user).pw_gid,
                extra_groups=None if self.os_user is None else [],
                timeout=timeout,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} exited with {result.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for name in ("commands.log", "server.log"):
            path = self.root / name
            with contextlib.suppress(OSError):
                out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)

    # -- lifecycle ------------------------------------------------------------------

    def init(self) -> None:
        self.socket_dir.mkdir()
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# tests/postgres.py\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "shared_buffers = 32MB\n"
                "max_connections = 100\n"
            )

    @property
    def running(self) -> bool:
        return self._pid is not None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self._pid

    def start(self) -> None:
        """Start the server (on `self.port`, which a stop/start keeps) and wait until it
        accepts connections. A port taken meanwhile by someone else is replaced once."""
        if self._pid is not None:
            return
        for attempt in range(3):
            try:
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.logfile),
                    "-o",
                    f"-p {self.port}",
                    "-w",
                    "-t",
                    str(int(START_TIMEOUT)),
                    "start",
                    timeout=START_TIMEOUT + 30,
                )
                break
            except RuntimeError:
                if attempt == 2 or "could not bind" not in self.log_tail():
                    raise
                self.port = _free_port()
        self._pid = self._read_pid()
        self._wait_ready()

    def _read_pid(self) -> int:
        first = (self.datadir / "postmaster.pid").read_text().splitlines()[0]
        return int(first)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with self.admin():
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut). If pg_ctl cannot, kill the
        postmaster this cluster started, by its pid."""
        pid = self._pid
        if pid is None:
            # A start that failed half-way may have left a postmaster of ours running.
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = self._read_pid()
        if pid is None:
            return
        try:
            self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(STOP_TIMEOUT)),
                "stop",
                timeout=STOP_TIMEOUT + 30,
            )
        except (RuntimeError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        self._pid = None

    # -- connections and databases -----------------------------------------------------

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """A superuser connection over the cluster's Unix socket (autocommit)."""
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )

    def url(self, dbname: str, *, password: str | None = None) -> str:
        """A URL for the test role over TCP (its password, or `password`)."""
        secret = quote(self.password if password is None else password, safe="")
        return f"postgresql://{self.role}:{secret}@127.0.0.1:{self.port}/{dbname}"

    def create_role(self) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(self.role), sql.Literal(self.password)
                )
            )

    def create_database(self) -> str:
        """A new empty database owned by the test role; its name."""
        name = f"orch_{secrets.token_hex(6)}"
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(self.role)
                )
            )
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, cutting any session still connected to it."""
        if not self.running:
            self.start()
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unavailable(reason: str) -> None:
    """Skip (or, when PostgreSQL is required, fail) a test that needs the cluster."""
    if os.environ.get(REQUIRE_FLAG) == "1":
        pytest.fail(f"{reason} (and {REQUIRE_FLAG}=1)", pytrace=False)
    pytest.skip(reason)


def _server_os_user() -> tuple[str | None, str]:
    if os.geteuid() != 0:
        return None, ""
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None, f"running as root and there is no `{SERVER_USER}` OS user to run it as"
    return SERVER_USER, ""


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir, why = find_bindir()
    if bindir is None:
        _unavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {why}")
        raise AssertionError("unreachable")
    os_user, why = _server_os_user()
    if why:
        _unavailable(f"cannot start PostgreSQL from {bindir}: {why}")
    root = Path(tempfile.mkdtemp(prefix="orch-pg-"))
    cluster = PostgresCluster(bindir, root, os_user)
    try:
        cluster.init()
        cluster.start()
        cluster.create_role()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(
    postgres_cluster: PostgresCluster, request: pytest.FixtureRequest
) -> Iterator[str]:
    if request.node.get_closest_marker("postgres") is None:
        # Reached through `getfixturevalue`, which tests/conftest.py cannot see.
        pytest.fail(
            f"{request.node.nodeid} uses PostgreSQL but is not marked `postgres`: "
            "mark it (or the parameter that needs it) with pytest.mark.postgres",
            pytrace=False,
        )
    if not postgres_cluster.running:
        postgres_cluster.start()
    name = postgres_cluster.create_database()
    try:
        yield postgres_cluster.url(name)
    finally:
        postgres_cluster.drop_database(name)


def database_name(url: str) -> str:
    """The database a `postgres_url` names."""
    match = re.search(r"/([^/?]+)(?:\?.*)?$", url)
    assert match is not None, url
    return match.group(1)
