"""Delivery of the emulator's NCS notifications to an operator's endpoint, as Agora's
Notification Center does it: signed, in the background, resent when not answered 200.

`NotificationSender.send` signs a notification (`ncs.sign` in `Agora-Signature-V2`,
`ncs.sign_sha1` in `Agora-Signature`) and queues it at once; one task (`run`) posts
the queue, each POST with a short timeout, and resends a failed one with the same
`noticeId` and body after growing intervals. The same task ticks while notifications
are on, so that changes the emulator evaluates lazily (idle exits, expiries) are
noticed within about a second without a request arriving. Delivery faults for tests
(`DeliveryControls`: duplicate, delay, reorder, drop) are applied here. Delays and
retries are real seconds; the notifications' own timestamps are the emulator clock's.

It must never put the NCS secret in an answer, a log line, an error or a repr (only
whether one is set), never delay an API answer (`send` only queues), and never leave
its task running after the emulator stops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog

from orchestrator.agora import ncs
from orchestrator.emulator.faults import known_fields

#: Seconds between two looks at the sessions while notifications are on.
TICK = 0.5
#: Deliveries kept for `GET /_emulator/notifications` (the oldest go first).
KEPT = 10_000

log = structlog.get_logger("orchestrator.emulator")


@dataclass(frozen=True)
class NotifyTarget:
    """Where notifications go and the NCS secret they are signed with."""

    url: str
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url) if isinstance(self.url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the notification URL must be an http:// or https:// URL")
        if not isinstance(self.secret, str) or not self.secret:
            raise ValueError("the notification secret must be a non-empty string")

    def describe(self) -> dict[str, Any]:
        """Where notifications go, and that a secret is set (never the secret)."""
        return {"url": self.url, "secret_set": True}


@dataclass
class DeliveryControls:
    """How notifications are delivered (to test a receiver); defaults are NCS's way.

    duplicate: each notification is delivered this many times (same noticeId, same body);
    delay: seconds each waits before its first attempt;
    reorder: seconds of a batch window: notifications queued within one are held
    until it closes, then sent newest first (0: in order, at once);
    drop: the next N notifications are lost (counted down; never sent, as when NCS loses them);
    retry: seconds before each resend of a failed delivery (len = the number of resends);
    timeout: seconds one POST may take.
    """

    duplicate: int = 1
    delay: float = 0.0
    reorder: float = 0.0
    drop: int = 0
    retry: tuple[float, ...] = (1.0, 2.0, 4.0)
    timeout: float = 2.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeliveryControls:
        """Controls from a control request (fields left out take their defaults);
        ValueError naming the field that is wrong."""
        values = dict(known_fields(cls.__dataclass_fields__, data, "delivery controls"))
        if "retry" in values:
            retry = values["retry"]
            if not isinstance(retry, list) or not all(_seconds(s) for s in retry):
                raise ValueError("retry must be a list of seconds >= 0")
            values["retry"] = tuple(float(s) for s in retry)
        controls = cls(**values)
        for name, low in (("duplicate", 1), ("drop", 0)):
            value = getattr(controls, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}")
        for name in ("delay", "reorder", "timeout"):
            if not _seconds(getattr(controls, name)):
                raise ValueError(f"{name} must be a number of seconds >= 0")
        if controls.timeout == 0:
            raise ValueError("timeout must be more than 0 seconds")
        return controls

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Delivery:
    """One notification on its way (one copy of it, with `duplicate`), and how it went."""

    notice: ncs.Notification
    url: str
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(repr=False)
    copy: int = 0
    attempts: int = 0
    status: int | None = None  # the last attempt's HTTP status (None: no answer)
    error: str | None = None  # the last attempt's failure
    state: str = "pending"  # pending | delivered | failed | dropped | cancelled

    def describe(self) -> dict[str, Any]:
        """What a test needs to see, never the signature headers."""
        payload = self.notice.payload
        return {
            "noticeId": self.notice.noticeId,
            "eventType": self.notice.eventType,
            "event": ncs.event_name(self.notice.eventType),
            "sid": payload.sid,
            "uid": payload.uid,
            "sequence": payload.sequence,
            "copy": self.copy,
            "url": self.url,
            "state": self.state,
            "attempts": self.attempts,
            "status": self.status,
            "error": self.error,
            "notification": self.notice.model_dump(mode="json"),
        }


class NotificationSender:
    """The emulator's Notification Center: a queue of deliveries and the one task that
    posts them. `tick` is called every `TICK` seconds while a target is set."""

    def __init__(self, target: NotifyTarget | None, tick: Callable[[], None]) -> None:
        self._target = target
        self._tick = tick
        self.controls = DeliveryControls()
        self.deliveries: collections.deque[Delivery] = collections.deque(maxlen=KEPT)
        self._queue: list[tuple[float, int, Delivery]] = []  # (due, order, delivery)
        self._order = itertools.count()
        self._batch_closes: float | None = None  # reorder: when the open batch is sent
        self._wake = asyncio.Event()

    @property
    def target(self) -> NotifyTarget | None:
        return self._target

    def configure(self, target: NotifyTarget | None) -> None:
        """Send later notifications to `target` (None: none); turned off, what is still
        queued is cancelled."""
        self._target = target
        if target is None:
            for _due, _order, delivery in self._queue:
                delivery.state = "cancelled"
            self._queue.clear()
        self._wake.set()

    def describe(self) -> dict[str, Any]:
        target = self._target
        return {
            "enabled": target is not None,
            **(target.describe() if target else {"url": None, "secret_set": False}),
            "delivery": self.controls.describe(),
            "pending": len(self._queue),
        }

    def send(self, notice: ncs.Notification) -> None:
        """Queue `notice` for the target (nothing without one); never waits."""
        target = self._target
        if target is None:
            return
        body = ncs.dumps(notice)
        headers = {
            "Content-Type": "application/json",
            ncs.SIGNATURE_HEADER: ncs.sign(target.secret, body),
            ncs.SIGNATURE_SHA1_HEADER: ncs.sign_sha1(target.secret, body),
        }
        controls = self.controls
        copies = [
            Delivery(notice, target.url, body, headers, copy=n) for n in range(controls.duplicate)
        ]
        if controls.drop > 0:
            controls.drop -= 1
            for delivery in copies:
                delivery.state = "dropped"
                self.deliveries.append(delivery)
            log.info("emulator.notification_dropped", notice_id=notice.noticeId)
            return
        now = time.monotonic()
        due = now + controls.delay
        for delivery in copies:
            order = next(self._order)
            if controls.reorder > 0:
                if self._batch_closes is None or now >= self._batch_closes:
                    self._batch_closes = now + controls.reorder
                # Held until the batch closes, then the newest first.
                due, order = self._batch_closes + controls.delay, -order
            self.deliveries.append(delivery)
            heapq.heappush(self._queue, (due, order, delivery))
        self._wake.set()

    def clear(self) -> None:
        """Forget what was delivered (the queue goes on)."""
        self.deliveries.clear()

    async def run(self) -> None:
        """Post what is due, tick while on, and sleep until the next of either."""
        next_tick = time.monotonic()
        async with aiohttp.ClientSession(trust_env=False) as http:
            while True:
                self._wake.clear()
                now = time.monotonic()
                if self._target is not None and now >= next_tick:
                    next_tick = now + TICK
                    self._look()
                while self._queue and self._queue[0][0] <= time.monotonic():
                    _due, _order, delivery = heapq.heappop(self._queue)
                    await self._post(http, delivery)
                wakes = [self._queue[0][0]] if self._queue else []
                if self._target is not None:
                    wakes.append(next_tick)
                timeout = max(0.0, min(wakes) - time.monotonic()) if wakes else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    def _look(self) -> None:
        try:
            self._tick()
        except Exception as exc:  # a bug in a look must not end every later delivery
            log.error("emulator.notification_tick_failed", error=type(exc).__name__)

    async def _post(self, http: aiohttp.ClientSession, delivery: Delivery) -> None:
        """One attempt; a failed one is queued again while resends are left."""
        delivery.attempts += 1
        try:
            timeout = aiohttp.ClientTimeout(total=self.controls.timeout)
            async with http.post(
                delivery.url, data=delivery.body, headers=delivery.headers, timeout=timeout
            ) as response:
                await response.read()
                delivery.status, delivery.error = response.status, None
                if response.status != 200:
                    delivery.error = f"answered HTTP {response.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            delivery.status, delivery.error = None, _failure(exc)
        retry = self.controls.retry
        if delivery.error is None:
            delivery.state = "delivered"
        elif delivery.attempts <= len(retry) and self._target is not None:
            due = time.monotonic() + retry[delivery.attempts - 1]
            heapq.heappush(self._queue, (due, next(self._order), delivery))
        else:
            delivery.state = "failed"
        notice = delivery.notice
        log.info(
            "emulator.notification",
            notice_id=notice.noticeId,
            event_type=notice.eventType,
            sid=notice.payload.sid,
            attempt=delivery.attempts,
            status=delivery.status,
            error=delivery.error,
        )


def _seconds(value: object) -> bool:
    """Whether `value` is a number of seconds (>= 0) in JSON (a boolean is not)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and value >= 0


def _failure(exc: BaseException) -> str:
    """Why a POST got no answer, in a few words (never the exception's text, which
    may quote the URL)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "cannot connect"
    return type(exc).__name__
