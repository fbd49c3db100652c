"""The daemon's JSON log, read from its file as it grows.

Every child the harness starts writes its stderr to a file of its own; `JsonLog`
reads what was added since the last look (a partial last line waits for the rest)
and keeps the JSON objects in order. Lines that are not JSON (a crash's last words)
are kept as text. Waiting for an event is a bounded wait on the file.

Must never: block, drop an event, or take a line for an event before it is whole.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.harness.waits import Living, wait_until, wait_until_blocking

Event = dict[str, Any]


def event_time(event: Event) -> float:
    """An event's `timestamp` as epoch seconds."""
    stamp = str(event.get("timestamp", "")).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def parse_event(line: str | bytes) -> Event | None:
    """One log line as an event, or None when it is not a JSON object."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def matches(event: Event, name: str, match: dict[str, Any]) -> bool:
    return event.get("event") == name and all(event.get(k) == v for k, v in match.items())


class JsonLog:
    """A JSON-lines file written by a child, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self._events: list[Event] = []
        self._lines: list[str] = []

    def _read(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
                self._offset = handle.tell()
        except FileNotFoundError:
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            self._lines.append(raw.decode("utf-8", errors="replace"))
            event = parse_event(raw)
            if event is not None:
                self._events.append(event)

    def events(self) -> list[Event]:
        """Every event so far, in order (a new list each time)."""
        self._read()
        return list(self._events)

    def lines(self, start: int = 0) -> list[str]:
        """Every whole line so far (from the `start`-th), JSON or not."""
        self._read()
        return self._lines[start:]

    def text(self) -> str:
        return "\n".join(self.lines())

    def tail(self, count: int = 30) -> str:
        return "\n".join(self.lines()[-count:])

    def named(self, name: str, **match: Any) -> list[Event]:
        """The events called `name` whose fields equal `match`."""
        return [e for e in self.events() if matches(e, name, match)]

    def _nth(self, name: str, after: int, match: dict[str, Any]) -> Event | None:
        found = self.named(name, **match)
        return found[after] if len(found) > after else None

    async def wait(
        self,
        name: str,
        *,
        within: float = 30,
        after: int = 0,
        alive: Living | None = None,
        **match: Any,
    ) -> Event:
        """The (`after`+1)-th event `name` matching `match`, once it is written."""
        return await wait_until(
            lambda: self._nth(name, after, match),
            within=within,
            what=f"{self.path.name}: {name} {match or ''}",
            alive=alive,
        )

    def wait_blocking(
        self,
        name: str,
        *,
        within: float = 30,
        after: int = 0,
        alive: Living | None = None,
        **match: Any,
    ) -> Event:
        return wait_until_blocking(
            lambda: self._nth(name, after, match),
            within=within,
            what=f"{self.path.name}: {name} {match or ''}",
            alive=alive,
        )
