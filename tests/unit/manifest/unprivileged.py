"""Calling a function as a user without special rights, for tests of unreadable paths.

root reads any file whatever its mode (capabilities CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH), so a `chmod 000` proves nothing when the tests run as root,
as they do in containers and on many CI runners. `as_unprivileged` calls a function
in a thread whose effective capabilities lack those two: the kernel then checks
modes for that thread as for anyone. Capabilities are per thread on Linux, so the
rest of the test process (fixtures, clean-up) keeps its rights. Not root: the
function is simply called. Imported by the test modules of this directory.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2
_VERSION_3 = 0x20080522  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_file_rights() -> None:
    """Clear the two capabilities from this thread's effective set (pid 0: this thread)."""
    libc = ctypes.CDLL(None, use_errno=True)
    header = _Header(_VERSION_3, 0)
    data = (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def as_unprivileged(function: Callable[[], T]) -> T:
    """`function()`, with file modes enforced even when the tests run as root."""
    if os.geteuid() != 0:
        return function()
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            _drop_file_rights()
        except (OSError, AttributeError) as exc:
            outcome["skip"] = f"cannot drop root's file rights in a thread: {exc}"
            return
        try:
            outcome["value"] = function()
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="unprivileged")
    thread.start()
    thread.join()
    if "skip" in outcome:
        pytest.skip(str(outcome["skip"]))
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
