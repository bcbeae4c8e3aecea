"""Soak: minutes of churn through a real JupyterHub with rustdocker; the hub must not grow.

    .venv/bin/python bench/soak.py                 # 30 minutes, 20 users
    .venv/bin/python bench/soak.py --minutes 3     # a short check of the same

One hub (the project venv's `jupyterhub`, its own configurable-http-proxy, sqlite, loopback
ports, `rustdocker.Spawner` with the tiny image plus a `VOLUME`, so every server has an
anonymous volume its removal must take along) and N users, each in a loop until the time is
up: wait a random moment, request the server (REST API), then at random either cancel it while
it is pending (DELETE), or wait until it is ready, keep it a random while and stop it, or have
it killed from outside (`docker kill`, which the hub finds on its next poll, `poll_interval` =
10 s). Every spawn's outcome comes from the hub's progress stream (`/server/progress`, what a
user's spawn page shows): ready, or failed with the hub's message ("Spawn cancelled" after a
cancel).

The hub process's RSS (`VmRSS`) and open file descriptors (`/proc/<pid>/fd`) are sampled every
few seconds. Growth is judged at two quiet points: after the warm-up and at the end the churn
pauses, every server is stopped, and the hub is left idle for `--settle` seconds (the engine
client keeps idle connections for 90 s); the two figures must be within 5%. The samples taken
during the churn are reported too (medians of the first and last windows after the warm-up).

Targets (exit status 1 if one is missed): RSS and fd growth < 5% between the quiet points,
no container or volume of the run left after all servers are stopped, every spawn ready or
failed with a message. Everything the run creates carries `org.rustdocker.hub=<soak id>` (or is
an anonymous volume mounted only into such a container) and is removed at the end, also after
an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from common import RawDocker, q
from hubbench import Hub
from leaks import LeakWatch, build_volume_image

BENCH = Path(__file__).resolve().parent

SOAK_CONFIG = """\
c.JupyterHub.concurrent_spawn_limit = 0
c.Spawner.poll_interval = 10
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Spawn:
    user: str
    at: float
    plan: str  # cancel, stop, kill
    outcome: str = ""  # ready, failed, cancelled, refused, unknown
    message: str = ""
    seconds: float = 0.0
    cancel_sent: bool = False
    notes: list[str] = field(default_factory=list)


def sample(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open fds) of process `pid`."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bench_id = f"rustdocker-soak-{uuid.uuid4().hex[:8]}"
        self.prefix = f"sk{self.bench_id[-6:]}"
        self.rng = random.Random(args.seed)
        self.docker = RawDocker()
        self.tmp = Path(tempfile.mkdtemp(prefix="rustdocker-soak-"))
        self.results = Path(args.out).resolve()
        self.results.parent.mkdir(parents=True, exist_ok=True)
        self.watch = LeakWatch(self.docker, self.bench_id)
        self.hub: Hub | None = None
        self.spawns: list[Spawn] = []
        self.samples: list[tuple[float, int, int]] = []  # (seconds since start, rss KiB, fds)
        self.quiet: dict[str, dict[str, Any]] = {}
        self.paused = False
        self.idle = 0
        self.resume = asyncio.Event()
        self.errors: list[str] = []
        self.t0 = 0.0

    # ------------------------------------------------------------------ hub requests

    def api(self, path: str) -> str:
        assert self.hub is not None
        return self.hub.url + path

    async def server_active(self, session: aiohttp.ClientSession, user: str) -> bool:
        assert self.hub is not None
        async with session.get(self.api(f"/users/{user}"), headers=self.hub.headers) as r:
            r.raise_for_status()
            return bool((await r.json()).get("servers"))

    async def until_inactive(
        self, session: aiohttp.ClientSession, user: str, timeout: float
    ) -> bool:
        deadline = time.monotonic() + timeout
        while await self.server_active(session, user):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.5)
        return True

    async def follow_progress(
        self, session: aiohttp.ClientSession, spawn: Spawn, t0: float, post: asyncio.Future[Any]
    ) -> None:
        """The spawn's outcome, from the hub's progress event stream; `t0`: its request."""
        assert self.hub is not None
        url = self.api(f"/users/{spawn.user}/server/progress")
        for attempt in range(2):
            async with session.get(url, headers=self.hub.headers) as r:
                if r.status == 400 and attempt == 0 and not post.done():
                    # The hub has not taken the request in yet: once it answered.
                    await asyncio.wait([post])
                    continue
                if r.status != 200:
                    spawn.outcome = "unknown"
                    spawn.message = f"progress: HTTP {r.status}: {(await r.text())[:200]}"
                    return
                async for raw in r.content:
                    line = raw.decode().strip()
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    if event.get("ready"):
                        spawn.outcome = "ready"
                    elif event.get("failed"):
                        spawn.outcome = "cancelled" if spawn.cancel_sent else "failed"
                        spawn.message = str(event.get("message", ""))
                    else:
                        continue
                    spawn.seconds = time.monotonic() - t0
                    return
            spawn.outcome = "unknown"
            spawn.message = "the progress stream ended with neither ready nor failed"
            return

    async def post(self, session: aiohttp.ClientSession, spawn: Spawn) -> None:
        """Requests the server. The hub answers once it is ready, or after
        `slow_spawn_timeout` (10 s) with 202 while it is still starting."""
        assert self.hub is not None
        async with session.post(
            self.api(f"/users/{spawn.user}/server"), json={}, headers=self.hub.headers
        ) as r:
            if r.status not in (201, 202):
                text = f"POST: HTTP {r.status}: {(await r.text())[:300]}"
                if spawn.cancel_sent:
                    spawn.notes.append(text)
                else:
                    spawn.outcome = "refused"
                    spawn.message = text

    async def kill(self, user: str) -> None:
        # The container's name: rustdocker's default template, `{prefix}-{username}`.
        await self.docker.request(
            "POST", f"/containers/{q(f'{self.prefix}-{user}')}/kill", ok=(204, 404, 409)
        )

    # ------------------------------------------------------------------ churn

    async def user_loop(self, session: aiohttp.ClientSession, user: str, deadline: float) -> None:
        assert self.hub is not None
        rng = random.Random(self.rng.random())
        headers = self.hub.headers
        server = self.api(f"/users/{user}/server")
        while time.monotonic() < deadline:
            if self.paused:
                self.idle += 1
                await self.resume.wait()
                self.idle -= 1
                continue
            await asyncio.sleep(rng.uniform(0, 4))
            roll = rng.random()
            plan = "cancel" if roll < 0.25 else "kill" if roll < 0.4 else "stop"
            spawn = Spawn(user, time.monotonic() - self.t0, plan)
            self.spawns.append(spawn)
            t0 = time.monotonic()
            post = asyncio.ensure_future(self.post(session, spawn))
            cancel_status = 0
            if plan == "cancel":
                # A random moment into the spawn, while the request is still open: usually while
                # the server is pending.
                await asyncio.wait([post], timeout=rng.uniform(0.2, 1.5))
            else:
                await post
            if spawn.outcome != "refused":
                progress = asyncio.ensure_future(self.follow_progress(session, spawn, t0, post))
                if plan == "cancel":
                    await asyncio.wait([progress], timeout=0.05)
                    spawn.cancel_sent = not progress.done()
                    async with session.delete(server, headers=headers) as r:
                        cancel_status = r.status
                        if r.status not in (202, 204):
                            spawn.notes.append(f"DELETE: HTTP {r.status}: {(await r.text())[:200]}")
                try:
                    await asyncio.wait_for(progress, 200)
                except asyncio.TimeoutError:
                    spawn.outcome = "unknown"
                    spawn.message = "no outcome in 200 s"
                await asyncio.wait([post], timeout=60)
                if plan == "cancel" and cancel_status not in (202, 204):
                    # The hub refused the cancel (JupyterHub gives a cancelled spawn 1 s to end,
                    # then answers 500 'pending spawn'): stop it again, as the user would.
                    async with session.delete(server, headers=headers) as r:
                        spawn.notes.append(f"DELETE again: HTTP {r.status}")
                    if spawn.outcome == "ready":
                        spawn.outcome = "cancel refused"
                        spawn.message = f"the hub refused the cancel ({cancel_status})"
                if plan != "cancel" and spawn.outcome == "ready":
                    await asyncio.sleep(rng.uniform(1, 15))
                    if plan == "kill":
                        await self.kill(user)
                    else:
                        async with session.delete(server, headers=headers) as r:
                            if r.status not in (202, 204):
                                spawn.notes.append(
                                    f"DELETE: HTTP {r.status}: {(await r.text())[:200]}"
                                )
            # The hub finds a killed server on its next poll (poll_interval = 10 s).
            if not await self.until_inactive(session, user, 120):
                spawn.notes.append("still active 120 s after its stop")
                self.errors.append(f"{user}: server still active 120 s after its stop")

    async def sampler(self) -> None:
        assert self.hub is not None and self.hub.pid is not None
        while True:
            rss, fds = sample(self.hub.pid)
            self.samples.append((time.monotonic() - self.t0, rss, fds))
            await asyncio.sleep(self.args.sample_every)

    async def quiet_point(
        self,
        session: aiohttp.ClientSession,
        name: str,
        users: list[str],
        running: list[asyncio.Future[None]],
    ) -> None:
        """Pauses the churn: every loop still `running` finishes its round (its server
        stopped), the hub is left idle for `--settle` s, then its RSS and fds are read (median of
        5 readings)."""
        assert self.hub is not None and self.hub.pid is not None
        self.paused = True
        self.resume.clear()
        t0 = time.monotonic()
        while self.idle < sum(1 for t in running if not t.done()):
            if time.monotonic() - t0 > 300:
                self.errors.append(f"{name}: the churn did not pause in 300 s")
                break
            await asyncio.sleep(0.5)
        stopped = await asyncio.gather(*(self.until_inactive(session, u, 60) for u in users))
        # A server the hub still holds as running after its stop (see `cancel refused`).
        stuck = [u for u, ok in zip(users, stopped, strict=True) if not ok]
        log(f"{name}: churn paused, all servers stopped; settling {self.args.settle:.0f} s")
        await asyncio.sleep(self.args.settle)
        readings = []
        for _ in range(5):
            readings.append(sample(self.hub.pid))
            await asyncio.sleep(1)
        rss = statistics.median(r[0] for r in readings)
        fds = statistics.median(r[1] for r in readings)
        self.quiet[name] = {
            "at": time.monotonic() - self.t0,
            "rss_kib": rss,
            "fds": fds,
            "held_as_running": stuck,
        }
        log(f"{name}: hub RSS {rss / 1024:.1f} MiB, {fds:.0f} open fds")
        self.paused = False
        self.resume.set()

    async def run(self) -> None:
        args = self.args
        users = [f"s{i:02d}" for i in range(args.users)]
        image = await asyncio.to_thread(build_volume_image, self.bench_id)
        self.watch.start()
        self.hub = Hub(
            "rustdocker",
            self.tmp / "hub",
            self.bench_id,
            self.prefix,
            image,
            self.results.with_suffix(".hub.log"),
            extra_config=SOAK_CONFIG,
        )
        self.hub.start()
        # No keep-alive: connections of this driver held open by the hub would count among its
        # fds.
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await self.hub.wait_up(session)
            await self.hub.create_users(session, users)
            self.t0 = time.monotonic()
            sampler = asyncio.ensure_future(self.sampler())
            warmup = args.warmup if args.warmup is not None else max(60.0, args.minutes * 10)
            end = self.t0 + args.minutes * 60
            log(
                f"soak {self.bench_id}: {args.users} users for {args.minutes:g} min "
                f"(warm-up {warmup:.0f} s), hub pid {self.hub.pid}"
            )
            loops = [asyncio.ensure_future(self.user_loop(session, u, end)) for u in users]
            try:
                await asyncio.sleep(warmup)
                await self.quiet_point(session, "after warm-up", users, loops)
                while time.monotonic() < end:
                    await asyncio.sleep(min(60, max(0.1, end - time.monotonic())))
                    done = sum(1 for s in self.spawns if s.outcome)
                    rss, fds = self.samples[-1][1:] if self.samples else (0, 0)
                    log(
                        f"{(time.monotonic() - self.t0) / 60:.1f} min: {done} spawns done, hub "
                        f"RSS {rss / 1024:.1f} MiB, {fds} fds"
                    )
                await asyncio.gather(*loops)
                await self.quiet_point(session, "at the end", users, [])
            finally:
                for task in [*loops, sampler]:
                    task.cancel()
                await asyncio.gather(*loops, sampler, return_exceptions=True)
        self.hub.stop()
        self.hub = None
        # Let the engine finish removals still under way before counting leaks.
        deadline = time.monotonic() + 60
        while (await self.watch.check())["containers"]:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(1)

    async def cleanup(self) -> dict[str, Any]:
        if self.hub is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.hub.stop)
        leaks = await self.watch.check()
        removed = await self.watch.remove_all()
        await self.watch.stop()
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)
        log(f"cleaned up: {removed} (labelled {self.watch.label})")
        return leaks


def growth(before: float, after: float) -> float:
    return (after - before) / before if before else float("nan")


def report(soak: Soak, leaks: dict[str, Any]) -> tuple[str, bool]:
    args = soak.args
    lines = [
        f"soak {soak.bench_id}: {args.users} users, {args.minutes:g} min of churn, "
        f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}, load average {os.getloadavg()[0]:.1f}"
    ]
    ok = True
    outcomes = collections.Counter(s.outcome or "unfinished" for s in soak.spawns)
    plans = collections.Counter(s.plan for s in soak.spawns)
    counted = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    planned = ", ".join(f"{k} {v}" for k, v in sorted(plans.items()))
    lines.append(f"spawns: {len(soak.spawns)} ({counted}); planned: {planned}")
    ready = [s.seconds for s in soak.spawns if s.outcome == "ready"]
    if ready:
        ready.sort()
        lines.append(
            f"time to ready: p50 {statistics.median(ready):.2f} s, "
            f"p95 {ready[int(0.95 * (len(ready) - 1))]:.2f} s, max {ready[-1]:.2f} s"
        )
    messages = collections.Counter(
        f"{s.outcome}: {s.message}" for s in soak.spawns if s.outcome not in ("ready", "")
    )
    for message, n in messages.most_common(10):
        lines.append(f"  {n} x {message[:160]}")
    unclear = [
        s
        for s in soak.spawns
        if s.outcome in ("unknown", "unfinished", "", "cancel refused")
        or (s.outcome in ("failed", "cancelled", "refused") and not s.message.strip())
    ]
    notes = [f"{s.user}: {n}" for s in soak.spawns for n in s.notes]
    for note in notes[:10]:
        lines.append(f"  note: {note}")
    target = f"every spawn ready or failed with a message: {len(unclear)} not"
    lines.append(target + ("  PASS" if not unclear else "  MISS"))
    ok &= not unclear and not soak.errors
    for error in soak.errors[:10]:
        lines.append(f"  error: {error}")
    base, end = soak.quiet.get("after warm-up"), soak.quiet.get("at the end")
    if base and end:
        for key, unit, scale in (("rss_kib", "MiB", 1024), ("fds", "fds", 1)):
            g = growth(base[key], end[key])
            passed = g < 0.05
            ok &= passed
            lines.append(
                f"hub {key.split('_')[0].upper() if key != 'fds' else 'open fds'} at rest: "
                f"{base[key] / scale:.1f} {unit} after the warm-up, {end[key] / scale:.1f} at the "
                f"end: growth {100 * g:+.1f}% (target < 5%)  {'PASS' if passed else 'MISS'}"
            )
    else:
        ok = False
        lines.append("the quiet points were not reached: no growth figure  MISS")
    after = [s for s in soak.samples if base and s[0] > base["at"]]
    if len(after) >= 10:
        k = max(3, len(after) // 10)
        first, last = after[:k], after[-k:]
        lines.append(
            "during the churn (median of the first and last tenth after the warm-up): "
            f"RSS {statistics.median(s[1] for s in first) / 1024:.1f} -> "
            f"{statistics.median(s[1] for s in last) / 1024:.1f} MiB, fds "
            f"{statistics.median(s[2] for s in first):.0f} -> "
            f"{statistics.median(s[2] for s in last):.0f}; max RSS "
            f"{max(s[1] for s in soak.samples) / 1024:.1f} MiB, max fds "
            f"{max(s[2] for s in soak.samples)}"
        )
    leaked = leaks["containers"] + leaks["volumes"]
    ok &= leaked == 0
    lines.append(
        f"left after all stopped: {leaks['containers']} containers, {leaks['volumes']} volumes "
        f"(of {leaks['containers_seen']} containers and {leaks['anonymous_volumes_seen']} "
        f"anonymous volumes the run made)  {'PASS' if leaked == 0 else 'MISS'}"
    )
    if leaked:
        lines.append(f"  {json.dumps(leaks)[:400]}")
    return "\n".join(lines), ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30, help="churn duration")
    parser.add_argument("--users", type=int, default=20, help="users churning at once")
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds of warm-up (default minutes x 10)"
    )
    parser.add_argument(
        "--settle", type=float, default=95, help="idle seconds before a quiet reading"
    )
    parser.add_argument("--sample-every", type=float, default=5, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--out", default=str(BENCH / "results" / "soak.json"))
    args = parser.parse_args()

    soak = Soak(args)
    loop = asyncio.new_event_loop()
    main_task = loop.create_task(soak.run())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main_task.cancel)
    try:
        loop.run_until_complete(main_task)
    except asyncio.CancelledError:
        soak.errors.append("interrupted")
        log("interrupted")
    except Exception as e:
        soak.errors.append(f"run: {e!r}")
        log(f"run failed: {e!r}")
    leaks = loop.run_until_complete(soak.cleanup())
    loop.close()
    text, ok = report(soak, leaks)
    soak.results.write_text(
        json.dumps(
            {
                "bench_id": soak.bench_id,
                "args": vars(args),
                "spawns": [asdict(s) for s in soak.spawns],
                "samples": soak.samples,
                "quiet": soak.quiet,
                "leaks": leaks,
                "errors": soak.errors,
                "ok": ok,
            },
            indent=1,
        )
        + "\n"
    )
    soak.results.with_suffix(".txt").write_text(text + "\n")
    print(text)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
