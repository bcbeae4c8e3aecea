"""What a user sees while their server starts: `Spawner.progress()`, which JupyterHub streams to
the spawn page's progress bar and to `GET /hub/api/users/<name>/server/progress`.

The core keeps each start's phase, and during a pull each layer's bytes, readable by the start's
ticket (`DockerClient.start_progress`); `progress()` reads it a few times a second and turns it
into short messages with a bar that moves in proportion to the bytes. The pure helpers at the top
hold the wording and the arithmetic; `Progress` holds the per-start state.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from traitlets import Float, TraitError, validate

from .traits import SpawnerPart

#: Where the bar stands at each phase; a pull moves it from PULL_FROM to PULL_TO by the bytes.
PERCENT = {
    "preparing": 1,
    "queued": 2,
    "volumes": 5,
    "create": 8,
    "start": 85,
    "task": 85,
    "waiting": 90,
}
PULL_FROM, PULL_TO = 10, 80
#: After this many seconds in one phase, the message says the spawn is slow, and why.
SLOW_AFTER = 20.0


def megabytes(n: float) -> str:
    """Bytes as whole megabytes with thousands separators: `1,024`."""
    return f"{n / 1e6:,.0f}"


def duration(seconds: float) -> str:
    """`34 s`, `2 min 5 s`, `1 h 3 min`."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class RateMeter:
    """Bytes per second over the last few seconds of samples."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, done: float) -> None:
        if self.samples and done < self.samples[-1][1]:
            self.samples.clear()  # another pull (a new lead after a cancelled one)
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()

    def rate(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None


def describe_pull(
    pull: dict[str, Any], joined: bool, meter: RateMeter, now: float
) -> tuple[int, str]:
    """The bar and message during a pull: `Pulling image x: 412 of 1,024 MB, 18 MB/s, about
    34 s left`. The bar counts downloaded and extracted bytes alike."""
    image = pull["image"]
    total, downloaded, extracted = pull["total"], pull["downloaded"], pull["extracted"]
    done = downloaded + extracted
    meter.add(now, done)
    rate = meter.rate()
    who = " (already being pulled for another server)" if joined else ""
    if total <= 0:
        layers = pull["layers"]
        what = f"{layers} layers" if layers else "asking the registry"
        return PULL_FROM, f"Pulling image {image}{who}: {what}"
    frac = min(1.0, done / (2 * total))
    percent = PULL_FROM + round((PULL_TO - PULL_FROM) * frac)
    downloading = downloaded < total or pull["sizes_unknown"] > 0
    verb, count = ("Pulling", downloaded) if downloading else ("Extracting", extracted)
    sized = pull["sizes_unknown"] == 0
    parts = [f"{megabytes(count)} of {'' if sized else 'at least '}{megabytes(total)} MB"]
    if rate is not None and rate > 0:
        parts.append(f"{rate / 1e6:,.1f} MB/s")
        if sized:
            parts.append(f"about {duration((2 * total - done) / rate)} left")
    if pull["layers"]:
        parts.append(f"layer {min(pull['layers_done'] + 1, pull['layers'])} of {pull['layers']}")
    message = f"{verb} image {image}{who}: {', '.join(parts)}"
    if rate is not None and rate < 1e5 and pull["elapsed"] > SLOW_AFTER:
        message += " (the registry is sending slowly)"
    return percent, message


def describe_task(state: str, node: str, image: str, slow: bool) -> str:
    """The message while a swarm service's task is on its way: its state, the node it is on,
    and what that means (`preparing`: the node pulls the image if it does not have it)."""
    where = f" on node {node!r}" if node else ""
    message = f"Waiting for the swarm to run the server (task {state or 'new'}{where}"
    if state == "preparing":
        message += f": the node pulls {image or 'the image'} if it does not have it"
    elif state == "pending" and slow:
        message += ": no node can take it yet (placement constraints, or resources reserved)"
    elif slow and state in ("assigned", "accepted"):
        message += ": the node may be pulling the image"
    return message + ")"


def describe(
    stage: str,
    snapshot: dict[str, Any] | None,
    meter: RateMeter,
    now: float,
    since: float,
    image: str = "",
) -> tuple[int, str]:
    """The bar and message for a start at `stage` (`preparing`, `core`, `waiting`), with the
    core's `snapshot` while it runs; `since` is when the stage (or the core's phase) began;
    `image` is the server's image."""
    if stage == "core" and snapshot is not None:
        phase = snapshot["phase"]
        if phase == "pull" and snapshot.get("pull"):
            return describe_pull(snapshot["pull"], snapshot.get("joined", False), meter, now)
        slow = snapshot["phase_seconds"] > SLOW_AFTER
        detail = snapshot.get("detail") or ""
        if phase == "queued":
            message = "Waiting for the previous operation on this server to end"
        elif phase == "volumes":
            message = "Creating the server's volumes"
        elif phase == "create":
            message = "Creating the container"
        elif phase == "task":
            message = describe_task(detail, snapshot.get("node") or "", image, slow)
        else:
            message = "Starting the container"
        if slow and phase != "task":
            message += f" (the Docker engine has taken {duration(snapshot['phase_seconds'])})"
        return PERCENT.get(phase, PERCENT["start"]), message
    if stage == "waiting":
        waited = now - since
        message = "Container started; waiting for the server to answer"
        if waited > SLOW_AFTER:
            message += f" ({duration(waited)} so far: it may still be starting up)"
        return PERCENT["waiting"], message
    return PERCENT["preparing"], "Preparing the server"


class Progress(SpawnerPart):
    """The progress of this spawner's start, as JupyterHub's spawn page shows it."""

    progress_interval = Float(
        0.5,
        help="""Seconds between two progress messages on the spawn page (at most; a message
        is sent only when something changed). From 0.1 to 10.

        Example: `c.DockerSpawner.progress_interval = 1`
        """,
    ).tag(config=True)

    @validate("progress_interval")
    def _validate_progress_interval(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0.1 <= value <= 10:
            raise TraitError(
                f"{type(self).__name__}.progress_interval = {value!r} is not allowed: use a "
                "number of seconds from 0.1 to 10"
            )
        return value

    # Where this spawner's start stands: None (not starting), "preparing", "core" (the core
    # runs the start with `_start_ticket`), "waiting" (the container runs; the hub waits for
    # the server to answer). Set by start().
    _start_stage: str | None = None
    _start_stage_since: float = 0.0
    _start_ticket: str | None = None
    _start_client: Any = None

    def _set_start_stage(
        self, stage: str | None, ticket: str | None = None, client: Any = None
    ) -> None:
        self._start_stage = stage
        self._start_stage_since = time.monotonic()
        self._start_ticket = ticket
        self._start_client = client

    def _core_progress(self) -> dict[str, Any] | None:
        client, ticket = self._start_client, self._start_ticket
        if client is None or ticket is None:
            return None
        try:
            text = client.start_progress(ticket)
        except Exception:  # progress is a courtesy: never fail a spawn over it
            self.log.debug("%s: no progress from the core", self._log_name, exc_info=True)
            return None
        return json.loads(text) if text else None

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """Progress events while the server starts: the phase (preparing, creating volumes,
        creating and starting the container, waiting for the server), and during a pull the
        bytes downloaded and extracted, the rate and the time left. The bar never moves back;
        an event is sent only when it changed, at most every `progress_interval` seconds. Ends
        when the start is over (JupyterHub also stops reading then)."""
        meter = RateMeter()
        last: dict[str, Any] | None = None
        highest = 0
        while True:
            stage = self._start_stage
            if stage is None:
                if not getattr(self, "_spawn_pending", False):
                    return
            else:
                percent, message = describe(
                    stage,
                    self._core_progress() if stage == "core" else None,
                    meter,
                    time.monotonic(),
                    self._start_stage_since,
                    str(getattr(self, "image", "")),
                )
                highest = max(highest, percent)
                event = {"progress": highest, "message": message}
                if event != last:
                    last = event
                    yield event
            await asyncio.sleep(self.progress_interval)
