"""Taking turns on the hub's event loop when many servers start at once."""

from __future__ import annotations

import asyncio
import time


class _LoopShare:
    """Spreads the synchronous part of many simultaneous starts over event-loop iterations.

    Building a start's spec (JupyterHub's environment, templates, volumes) takes a fraction of
    a millisecond, but a hundred starts requested at once would run back to back and stall
    the hub's event loop (its HTTP handlers, the proxy, other users' polls) for tens of
    milliseconds. A start takes its turn here first: once `budget` seconds of set-up have run
    in one loop iteration, the next starts wait for the following iteration.
    """

    def __init__(self, budget: float = 0.002) -> None:
        self.budget = budget
        self._window: tuple[asyncio.AbstractEventLoop, float] | None = None

    def _close(self) -> None:
        self._window = None

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            window = self._window
            if window is None or window[0] is not loop:
                # A new iteration (or a window left by another loop): open a window, closed
                # by a callback that runs in the next iteration.
                self._window = (loop, time.perf_counter())
                loop.call_soon(self._close)
                return
            if time.perf_counter() - window[1] <= self.budget:
                return
            await asyncio.sleep(0)


_loop_share = _LoopShare()
