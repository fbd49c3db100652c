"""Reading manifests from files and directories into models, or into positioned diagnostics.

The loading API, in one place for its callers: `load_file` (one file),
`load_manifests` (files and directories, checked together) and `ManifestCache`
(the daemon's: loaded again cheaply), with the records they answer with. The
work is done by one module per job:

- `discovery`: finding the files (directories, symlinks, loops, unreadable paths);
- `reading`: the bounded reader shared with the daemon config (regular files
  only, a size cap, UTF-8, nesting and alias bounds, duplicate keys);
- `parsing`: one file's bytes into valid manifests and positioned diagnostics;
- `cache`: many files, parsing only what changed, and the cross-file checks
  (`crosscheck`);
- `loaded`: the records they share (`LoadedManifest`, `LoadResult`, `Target`).

It must never raise on bad input or print a traceback, and never take what it
cannot read for what is not there: a path, directory or file that cannot be read
is an error at that path and is listed in `LoadResult.unreadable`, so that
whatever stood there keeps its last known good version.
"""

from __future__ import annotations

from orchestrator.manifest.cache import FileKey, LoadHooks, ManifestCache, load_manifests
from orchestrator.manifest.diagnostics import Diagnostic, Severity
from orchestrator.manifest.discovery import RACY_NS, YAML_SUFFIXES, discover
from orchestrator.manifest.loaded import LoadedManifest, LoadResult, LoadStats, Target
from orchestrator.manifest.parsing import parse_file, read_manifest_file

__all__ = [
    "RACY_NS",
    "YAML_SUFFIXES",
    "Diagnostic",
    "FileKey",
    "LoadHooks",
    "LoadResult",
    "LoadStats",
    "LoadedManifest",
    "ManifestCache",
    "Severity",
    "Target",
    "discover",
    "load_file",
    "load_manifests",
]


def load_file(path: str, *, strict: bool = False) -> tuple[list[LoadedManifest], list[Diagnostic]]:
    """The valid manifests of one file and its diagnostics; never raises on the content.

    Valid documents are returned even when another document of the file has an
    error (so cross-file checks can see them); `load_manifests` drops them. A
    path that is not a regular file (a FIFO, a socket, a device) is never read:
    a warning (an error under `strict`).
    """
    raw = read_manifest_file(path, strict=strict)
    if isinstance(raw, Diagnostic):
        return [], [raw]
    parsed = parse_file(path, raw, strict=strict)
    return parsed.manifests, parsed.diagnostics
