"""What async resources of different layers share (a leaf).

The API client (`agora`) and the state stores (`state`), which must not know each
other, both close with `aclose()` and are used as `async with ...:`; `AsyncClosing`
writes that protocol once for both.

It must never import anything of ours: the layers that build on it sit above it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class AsyncClosing(ABC):
    """`async with thing:` hands the thing itself to the block and closes it with
    `await thing.aclose()` when the block ends, however it ends."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the object holds (a connection, a thread, a lock)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
