"""What a load parsed, kept on disk for the next start: `Snapshot`.

A daemon restarted with its 10,000 files unchanged (the watchdog, an upgrade, a
crash) should not parse them all again while boundaries wait. After its loads the
daemon writes what each file gave (`Saved`: its valid manifests, with their spec
hash, and its findings), keyed by the file's path and the digest of its bytes; at
the next start `ManifestCache` takes a file whose bytes have that very digest from
it instead of parsing it. Content decides, never a time stamp: a file whose bytes
differ in any way is parsed and validated in full.

The whole file is keyed too (`Snapshot.key`): by the program (its version, the
digest of its own source, Python's and the parsing libraries' versions) and by what
the caller says the result depends on (the daemon: its configuration, secrets
described, never their values). Any difference, and nothing in it is used.

It must never hold a secret (a file with a literal secret is not kept: it is parsed
again at each start), never be taken from a file another user could have written
(unpickling runs code: the file must belong to this process's user and be writable
by no one else), and never fail a start: a snapshot that cannot be read is one
that is not there, and the caller says why.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import stat
import sys
import threading
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from orchestrator.errors import OrchestratorError
from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.manifest.loaded import LoadedManifest

__all__ = ["SNAPSHOT_FILE", "Saved", "Snapshot", "SnapshotError", "program_key"]

SNAPSHOT_FILE = "manifests.snapshot"
"""The daemon's snapshot's name in its state directory (`state.dir`)."""

_MAGIC = b"orchestrator manifest snapshot 1\n"
_KEY_BYTES = 32


class SnapshotError(OrchestratorError):
    """The snapshot could not be read or written; the message says why (no secret)."""


class Saved(NamedTuple):
    """What one file gave at its last parse: valid for the bytes with `digest` only."""

    digest: bytes  # blake2b-128 of the file's bytes (`ManifestCache`'s content digest)
    manifests: list[LoadedManifest]
    diagnostics: list[Diagnostic]


@functools.cache
def program_key() -> bytes:
    """What the program is: its version, the digest of every source file of the
    package, and the versions of Python and of the libraries that parse and validate.
    Another build of any of them parses differently, perhaps."""
    import orchestrator  # the package's own files: a code change is a new program

    h = hashlib.blake2b(digest_size=_KEY_BYTES)
    h.update(f"{orchestrator.__version__}\0{sys.version}\0".encode())
    for dist in ("pydantic", "pydantic-core", "ruamel.yaml", "ruamel.yaml.clib"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "-"
        h.update(f"{dist}={version}\0".encode())
    root = Path(orchestrator.__file__).parent
    for source in sorted(root.rglob("*.py")):
        h.update(source.relative_to(root).as_posix().encode() + b"\0")
        h.update(source.read_bytes())
    return h.digest()


class Snapshot:
    """The snapshot file at `path`, valid for `depends_on` (what else, besides the
    program and each file's bytes, the parse results depend on). Thread-safe."""

    def __init__(self, path: Path, depends_on: bytes) -> None:
        self.path = path
        self.depends_on = depends_on
        h = hashlib.blake2b(program_key(), digest_size=_KEY_BYTES)
        h.update(depends_on)
        self.key = h.digest()
        self._lock = threading.Lock()

    def read(self) -> dict[str, Saved]:
        """What was saved, by path; empty when there is no snapshot or it is another
        program's or configuration's. Raises SnapshotError when it cannot be trusted
        or read."""
        with self._lock:
            try:
                with open(self.path, "rb") as f:
                    _check_owner(os.fstat(f.fileno()))
                    head = f.read(len(_MAGIC) + _KEY_BYTES)
                    if head != _MAGIC + self.key:
                        return {}  # another program, configuration or format: not used
                    check = f.read(_KEY_BYTES)
                    payload = f.read()
            except FileNotFoundError:
                return {}
            except OSError as exc:
                raise SnapshotError(f"{self.path}: {exc.strerror or exc}") from None
            if _checksum(payload) != check:
                raise SnapshotError(f"{self.path}: damaged (its checksum differs)")
            try:
                # our own file, its owner and mode checked, its checksum too (see above)
                saved = pickle.loads(payload)  # noqa: S301
            except Exception as exc:  # truncated or damaged: not used
                raise SnapshotError(f"{self.path}: damaged ({type(exc).__name__})") from None
        if not isinstance(saved, dict):
            raise SnapshotError(f"{self.path}: damaged (not a snapshot)")
        return saved

    def write(self, files: Mapping[str, Saved]) -> int:
        """Replace the snapshot with `files` (atomically: a reader sees the old one or
        the new one); returns its size in bytes. Raises SnapshotError."""
        payload = pickle.dumps(dict(files), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(_MAGIC + self.key + _checksum(payload))
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    temporary.unlink(missing_ok=True)
                raise SnapshotError(f"{self.path}: {exc.strerror or exc}") from None
        return len(_MAGIC) + 2 * _KEY_BYTES + len(payload)


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_KEY_BYTES).digest()


def _check_owner(st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise SnapshotError("not a regular file")
    if st.st_uid != os.geteuid():
        raise SnapshotError("it belongs to another user: not used")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SnapshotError("others may write it: not used")
