"""In-process wake-ups for the hand-off's event streams."""

from __future__ import annotations

import asyncio


class Hub:
    """Wakes the event streams of a session when a photo arrives in this process (other worker
    processes are seen by the streams' periodic database check). Holds an entry only while a stream waits."""

    def __init__(self):
        self._events: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, int] = {}

    def notify(self, session_id: str) -> None:
        event = self._events.get(session_id)
        if event is not None:
            event.set()

    async def wait(self, session_id: str, timeout: float) -> None:
        event = self._events.setdefault(session_id, asyncio.Event())
        self._waiting[session_id] = self._waiting.get(session_id, 0) + 1
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._waiting[session_id] -= 1
            if self._waiting[session_id] == 0 or event.is_set():
                self._events.pop(session_id, None)
            if self._waiting[session_id] == 0:
                del self._waiting[session_id]
