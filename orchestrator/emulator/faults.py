"""The faults the emulator injects into API calls: random fractions (`FaultConfig`,
reproducible with a seed) and exactly placed ones (`NextFault`), and which one the
next call to an endpoint meets (`pick_fault`).

It must never act on a request itself (the server does, per the fault it picked), nor
name a value of a control request in an error (it may be a secret typed in the wrong
field): errors name the fields only.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.contract import ENDPOINTS

FAULT_KINDS = ("lost", "error", "code65", "delay", "hold", "answer")


def known_fields(fields: Iterable[str], data: dict[str, Any], what: str) -> dict[str, Any]:
    """`data`, if it names only `fields`; ValueError naming the others (never a value)."""
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown {what}: {sorted(unknown)}")
    return data


@dataclass
class FaultConfig:
    """Random faults, deterministic for a given `seed` and request order.

    error_rate: fraction answered `error_status` (the action does not happen);
    code65_rate: fraction answered code 65 (the action does not happen);
    lost_rate: fraction whose action happens but whose answer is a 504;
    latency: (min, max) seconds added before every answer.
    """

    error_rate: float = 0.0
    error_status: int = 500
    code65_rate: float = 0.0
    lost_rate: float = 0.0
    latency: tuple[float, float] = (0.0, 0.0)
    seed: int | None = None
    endpoints: tuple[str, ...] = ENDPOINTS

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultConfig:
        config = cls(**known_fields(cls.__dataclass_fields__, data, "fault settings"))
        for rate in (config.error_rate, config.code65_rate, config.lost_rate):
            if not 0.0 <= float(rate) <= 1.0:
                raise ValueError("rates must be between 0 and 1")
        low, high = config.latency
        if not 0 <= low <= high:
            raise ValueError("latency must be [min, max] with 0 <= min <= max")
        if not 500 <= int(config.error_status) <= 599:
            raise ValueError("error_status must be a 5xx status")
        config.latency = (float(low), float(high))
        config.endpoints = tuple(config.endpoints)
        if not set(config.endpoints) <= set(ENDPOINTS):
            raise ValueError(f"endpoints must be among {ENDPOINTS}")
        return config


@dataclass
class NextFault:
    """Fail the next `count` calls to `endpoint` ("*" for any) with `kind`.

    kind "lost": the action happens, the answer is 504; "error": answered `status`
    (default 500) without acting; "code65": answered code 65 without acting;
    "delay": the action happens after `seconds` (to make a client time out);
    "hold": the action happens at once, the answer is held `seconds` (to kill a
    client between an action taking effect and its answer arriving);
    "answer": answered `status` with `{"code": code, "reason": ...}` (or, without a
    code, the gateway's `{"message": ...}`) without acting: any error of the
    reference, placed exactly; or, with `body`, answered `status` (200-599) with
    exactly that text and `content_type` (none if not given): an answer that is not
    Agora's, such as a proxy's `404 <html>nginx</html>` or an empty 404.
    """

    endpoint: str
    kind: str
    count: int = 1
    status: int = 500
    seconds: float = 0.0
    code: int | None = None
    body: str | None = None
    content_type: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NextFault:
        fault = cls(**known_fields(cls.__dataclass_fields__, data, "fault fields"))
        if fault.endpoint != "*" and fault.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be '*' or one of {ENDPOINTS}")
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}")
        if fault.count < 1:
            raise ValueError("count must be at least 1")
        if fault.body is not None or fault.content_type is not None:
            if fault.kind != "answer":
                raise ValueError("body and content_type belong to an answer fault")
            if fault.code is not None:
                raise ValueError("an answer with a body carries no code: the body is sent as is")
            if not isinstance(fault.body, str):
                raise ValueError("body must be a string (the answer's exact text)")
            if fault.content_type is not None and (
                not isinstance(fault.content_type, str) or not fault.content_type.isprintable()
            ):
                raise ValueError("content_type must be a printable string")
            if not 200 <= int(fault.status) <= 599:
                raise ValueError("an answer with a body needs a status of 200-599")
        elif fault.kind == "answer" and not 400 <= int(fault.status) <= 599:
            raise ValueError("an answer fault needs an error status (400-599)")
        return fault


def pick_fault(
    next_faults: list[NextFault], faults: FaultConfig, rng: random.Random, endpoint: str
) -> NextFault | None:
    """The fault the next call to `endpoint` meets: the first of `next_faults` for it
    (used up by one), else a random one per `faults`; None: no fault."""
    for fault in next_faults:
        if fault.endpoint in ("*", endpoint):
            fault.count -= 1
            if fault.count == 0:
                next_faults.remove(fault)
            return fault
    if endpoint not in faults.endpoints:
        return None
    # Always draw all three, so one request consumes the same randomness whatever happens.
    draws = (rng.random(), rng.random(), rng.random())
    if draws[0] < faults.error_rate:
        return NextFault(endpoint, "error", status=faults.error_status)
    if draws[1] < faults.code65_rate:
        return NextFault(endpoint, "code65")
    if draws[2] < faults.lost_rate:
        return NextFault(endpoint, "lost")
    return None
