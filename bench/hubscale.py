"""JupyterHub at scale, rustdocker side by side with DockerSpawner 14: a 200-user storm and a hub
restart with 300 servers running.

    .venv/bin/python bench/hubscale.py storm      # 200 users at once, then all stopped
    .venv/bin/python bench/hubscale.py restart    # 300 servers, the hub restarted under them
    .venv/bin/python bench/hubscale.py --help     # sizes, repetitions, systems

Each system gets a real hub of its own (rustdocker's from the project venv, DockerSpawner's from
bench/.venv-dockerspawner), with configurable-http-proxy, sqlite, loopback ports, the tiny image
plus a `VOLUME` (so every server has an anonymous volume its removal must take along), and
`concurrent_spawn_limit = 0` (no limit; JupyterHub's default of 100 would answer the 101st
request with 429).

- **storm**: N users' servers requested at once through the REST API; the time each is ready
  (polling `GET /hub/api/users?state=ready`), failures, then all stopped at once; after that,
  what is left on the engine (containers, labelled volumes, anonymous volumes mounted into the
  run's containers).
- **restart**: N servers started through the hub, whose Docker client talks to the engine
  through the counting proxy (proxy.py, a process of its own); the proxy (CHP) is run by this
  script and the hub has `cleanup_servers = False`, so stopping the hub (SIGTERM) leaves proxy
  and containers running. Then the hub is started again and timed from the process start until
  `GET /hub/api/` answers, until one user's model shows its server ready, and until all N
  are ready; the Docker API calls from the process start until all are ready are counted by
  the proxy. A few servers are requested through CHP after the restart. Then all servers are
  stopped and the restart is timed again: the hub with no servers.

Everything the run creates carries `org.rustdocker.hub=<bench id>` and is removed at the end,
also after an error or Ctrl-C. Results: bench/results/hubscale-<command>.json and .txt.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from common import RawDocker, median, summarize
from hubbench import Hub
from leaks import LeakWatch, build_volume_image

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SCALE_CONFIG = """\
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.active_server_limit = 0
# One page of the REST API's user list holds every user (the default maximum is 200).
c.JupyterHub.api_page_default_limit = 1000
c.JupyterHub.api_page_max_limit = 1000
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 300
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bench_id = f"rustdocker-bench-{uuid.uuid4().hex[:8]}"
        self.short = self.bench_id[-6:]
        self.docker = RawDocker()
        self.tmp = Path(tempfile.mkdtemp(prefix="rustdocker-hubscale-"))
        self.out = BENCH / "results" / f"hubscale-{args.command}.json"
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.watch = LeakWatch(self.docker, self.bench_id)
        self.hubs: list[Hub] = []
        self.proxies: list[subprocess.Popen[bytes]] = []
        self.data: dict[str, Any] = {"bench_id": self.bench_id, "args": vars(args), "errors": []}
        self.image = ""

    def python(self, system: str) -> str:
        if system == "dockerspawner":
            return str(BENCH / ".venv-dockerspawner" / "bin" / "python")
        return str(self.args.rustdocker_python)

    def hub(self, system: str, tag: str, **kwargs: Any) -> Hub:
        hub = Hub(
            system,
            self.tmp / f"hub-{system}-{tag}",
            self.bench_id,
            f"{system[:2]}{tag}{self.short}",
            self.image,
            self.out.parent / f"hubscale-{system}-{tag}.log",
            python=self.python(system),
            extra_config=SCALE_CONFIG,
            **kwargs,
        )
        self.hubs.append(hub)
        return hub

    def start_proxy(self, name: str) -> str:
        """A counting proxy (proxy.py) in a process of its own; returns its socket."""
        sock = str(self.tmp / f"{name}.sock")
        proc = subprocess.Popen(
            [sys.executable, str(BENCH / "proxy.py"), sock],
            stdout=subprocess.PIPE,
            stderr=(self.out.parent / "hubscale-proxy.log").open("ab"),
            start_new_session=True,
        )
        self.proxies.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the counting proxy did not start")
        return sock

    async def counts(self, sock: str) -> dict[str, int]:
        counter = RawDocker(sock)
        r = await counter.request("GET", "/_bench/count", versioned=False)
        return dict(r.json()["by_kind"])

    async def settle_engine(self, timeout: float = 120) -> int:
        """Waits until none of the run's containers is left (DockerSpawner's AutoRemove may
        still be at work after the hub reports the server stopped); returns how many are."""
        deadline = time.monotonic() + timeout
        while True:
            left = int((await self.watch.check())["containers"])
            if not left or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.5)

    async def cleanup(self) -> None:
        for hub in self.hubs:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(hub.stop)
        for proc in self.proxies:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        removed = await self.watch.remove_all()
        await self.watch.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        log(f"cleaned up: {removed} labelled {self.watch.label}")

    # ------------------------------------------------------------------ storm

    async def storm(self, session: aiohttp.ClientSession) -> None:
        users = [f"u{i:03d}" for i in range(self.args.users)]
        out: dict[str, list[Any]] = {s: [] for s in self.args.systems}
        self.data["storm"] = out
        hubs = {s: self.hub(s, "st") for s in self.args.systems}
        for hub in hubs.values():
            hub.start()
        for hub in hubs.values():
            await hub.wait_up(session)
            await hub.create_users(session, users)
        for rep in range(self.args.reps):
            order = self.args.systems if rep % 2 == 0 else self.args.systems[::-1]
            for system in order:
                r = await hubs[system].round(session, users, timeout=900)
                r["left_after_stop_s"] = await self.settle_engine()
                leaks = await self.watch.check()
                r["leaked_containers"] = leaks["containers"]
                r["leaked_volumes"] = leaks["volumes"]
                r["anonymous_volumes_seen"] = leaks["anonymous_volumes_seen"]
                out[system].append(r)
                lat = summarize(r["ready_latencies"])
                log(
                    f"storm rep {rep + 1} {system:<13} {r['ready']}/{len(users)} ready, all in "
                    f"{r['start_wall']:.1f} s (p50 {lat['p50']:.1f}, p95 {lat['p95']:.1f}), "
                    f"stopped in {r['stop_wall']:.1f} s, left {leaks['containers']} containers "
                    f"{leaks['volumes']} volumes"
                    + (f", errors {r['errors'][:3]}" if r["errors"] else "")
                )
                if leaks["containers"] or leaks["volumes"]:
                    await self.watch.remove_all()
                await asyncio.sleep(2)

    # ------------------------------------------------------------------ restart

    async def start_all(
        self, session: aiohttp.ClientSession, hub: Hub, users: list[str], batch: int = 50
    ) -> None:
        """Starts every user's server, `batch` at a time (what is measured here is the restart;
        300 requests at once keep a hub's event loop busy for a minute on 2 cores, its own
        database work), and starts again a server whose spawn failed, as its user would."""

        async def post(user: str) -> None:
            # A failure is retried below; 400 means already running or pending.
            try:
                async with session.post(
                    hub.url + f"/users/{user}/server", json={}, headers=hub.headers
                ) as r:
                    if r.status not in (201, 202, 400):
                        log(f"POST {user}: HTTP {r.status}: {(await r.text())[:200]}")
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                log(f"POST {user}: {e!r}")

        async def in_state(state: str) -> set[str]:
            for _ in range(20):
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    return await hub.users_in_state(session, state)
                await asyncio.sleep(1)
            return await hub.users_in_state(session, state)

        t0 = time.perf_counter()
        retried = 0
        for k in range(0, len(users), batch):
            group = set(users[k : k + batch])
            await asyncio.gather(*(post(u) for u in group))
            while True:
                ready = await in_state("ready") & group
                if ready == group:
                    break
                failed = group - ready - await in_state("active")
                for user in failed:
                    retried += 1
                    await post(user)
                if time.perf_counter() - t0 > 1800 or retried > len(users):
                    raise TimeoutError(f"the servers were not all ready ({len(ready)} of a batch)")
                await asyncio.sleep(0.5)
        log(
            f"{hub.kind}: {len(users)} servers ready in {time.perf_counter() - t0:.1f} s "
            f"({retried} spawns retried)"
        )
        self.data.setdefault("start_retries", {})[hub.kind] = retried

    async def stop_all(self, session: aiohttp.ClientSession, hub: Hub, users: list[str]) -> None:
        async def delete(user: str) -> None:
            async with session.delete(hub.url + f"/users/{user}/server", headers=hub.headers) as r:
                if r.status not in (202, 204):
                    raise RuntimeError(f"DELETE {user}: HTTP {r.status}: {await r.text()}")

        await asyncio.gather(*(delete(u) for u in users))
        deadline = time.monotonic() + 900
        while True:
            if not await hub.users_in_state(session, "active") & set(users):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the servers were not all stopped in 900 s")
            await asyncio.sleep(0.5)

    async def timed_restart(
        self, session: aiohttp.ClientSession, hub: Hub, sock: str, users: list[str], running: int
    ) -> dict[str, Any]:
        """Stops the hub, starts it again; seconds from the process start until the API
        answers, until `users[0]` shows its server ready and until `running` servers do, and
        the Docker API calls meanwhile."""
        await asyncio.to_thread(hub.stop_hub)
        await asyncio.sleep(1.0)
        before = await self.counts(sock)
        t0 = time.perf_counter()
        hub.start()
        api = user_ready = all_ready = math.nan
        first = users[0]
        deadline = t0 + 600
        while time.perf_counter() < deadline:
            now = time.perf_counter() - t0
            with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
                if math.isnan(api):
                    async with session.get(hub.url + "/", headers=hub.headers) as r:
                        if r.status == 200:
                            api = now
                if not math.isnan(api) and running and math.isnan(user_ready):
                    async with session.get(hub.url + f"/users/{first}", headers=hub.headers) as r:
                        if r.status == 200:
                            server = (await r.json()).get("servers", {}).get("")
                            if server and server.get("ready"):
                                user_ready = now
                if (
                    not math.isnan(api)
                    and running
                    and math.isnan(all_ready)
                    and len(await hub.users_in_state(session, "ready") & set(users)) >= running
                ):
                    all_ready = now
            if not math.isnan(api) and (not running or not math.isnan(all_ready)):
                break
            await asyncio.sleep(0.05)
        # The calls of the start-up, until the servers were all re-attached (or the API
        # answered, with none).
        after = await self.counts(sock)
        calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        calls = {k: v for k, v in sorted(calls.items()) if v}
        return {
            "api_s": api,
            "user_ready_s": user_ready,
            "all_ready_s": all_ready,
            "calls": calls,
            "calls_total": sum(calls.values()),
        }

    async def through_proxy(self, session: aiohttp.ClientSession, hub: Hub, users: list[str]):
        """Requests `/user/<name>/` through CHP for a few users: busybox httpd in the container
        answers 404 (no such file) with no `Server: TornadoServer` header; the hub would answer
        with its own pages (a redirect to the login)."""
        reached = 0
        base = hub.url.removesuffix("/hub/api")
        for user in users:
            async with session.get(base + f"/user/{user}/", allow_redirects=False) as r:
                body = await r.text()
                if "Tornado" not in r.headers.get("Server", "") and "404 Not Found" in body:
                    reached += 1
        return reached

    async def restart(self, session: aiohttp.ClientSession) -> None:
        users = [f"r{i:03d}" for i in range(self.args.servers)]
        out: dict[str, Any] = {}
        self.data["restart"] = out
        for system in self.args.systems:
            sock = self.start_proxy(f"proxy-{system}")
            hub = self.hub(system, "rs", docker_socket=sock, external_proxy=True)
            hub.start()
            await hub.wait_up(session)
            await hub.create_users(session, users)
            res: dict[str, Any] = {"with_servers": [], "no_servers": []}
            out[system] = res
            await self.start_all(session, hub, users)
            res["reached_before"] = await self.through_proxy(session, hub, users[:5])
            for k in range(self.args.restarts):
                r = await self.timed_restart(session, hub, sock, users, len(users))
                r["ready_after"] = len(await hub.users_in_state(session, "ready") & set(users))
                r["reached"] = await self.through_proxy(session, hub, users[-5:])
                res["with_servers"].append(r)
                log(
                    f"restart {k + 1} {system:<13} {len(users)} servers: API after "
                    f"{r['api_s']:.2f} s, {users[0]} ready after {r['user_ready_s']:.2f} s, all "
                    f"{r['ready_after']} after {r['all_ready_s']:.2f} s, {r['calls_total']} "
                    f"Docker calls {r['calls']}, {r['reached']}/5 reached through CHP"
                )
            await self.stop_all(session, hub, users)
            await self.settle_engine()
            for k in range(self.args.restarts):
                r = await self.timed_restart(session, hub, sock, users, 0)
                res["no_servers"].append(r)
                log(
                    f"restart {k + 1} {system:<13} no servers: API after {r['api_s']:.2f} s, "
                    f"{r['calls_total']} Docker calls {r['calls']}"
                )
            await asyncio.to_thread(hub.stop)

    async def run(self) -> None:
        self.image = await asyncio.to_thread(build_volume_image, self.bench_id)
        self.watch.start()
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await getattr(self, self.args.command)(session)


# --------------------------------------------------------------------------- report


def report(data: dict[str, Any]) -> str:
    lines = [f"hubscale {data['args']['command']} {data['bench_id']}"]
    if "storm" in data:
        storm = data["storm"]
        n = data["args"]["users"]
        lines.append(
            f"{n} users' servers requested at once through a real JupyterHub (REST API), then all "
            "stopped; seconds, median of the rounds; latency from the common start"
        )
        lines.append(
            f"{'system':<14} {'ready':>7} {'failed':>6} {'all ready':>9} {'p50':>6} {'p95':>6} "
            f"{'max':>6} {'all/rd':>6} {'p50/rd':>6} {'stopped':>7} {'leaked c/v':>10}"
        )
        base: dict[str, float] = {}
        for system, rounds in storm.items():
            if not rounds:
                continue
            lat = [summarize(r["ready_latencies"]) for r in rounds]
            row = {
                "ready": min(r["ready"] for r in rounds),
                "failed": max(len(r["errors"]) for r in rounds),
                "wall": median([r["start_wall"] for r in rounds]),
                "p50": median([x["p50"] for x in lat]),
                "p95": median([x["p95"] for x in lat]),
                "max": median([x["max"] for x in lat]),
                "stop": median([r["stop_wall"] for r in rounds]),
                "lc": max(r["leaked_containers"] for r in rounds),
                "lv": max(r["leaked_volumes"] for r in rounds),
            }
            base = base or row
            lines.append(
                f"{system:<14} {row['ready']:>3}/{n:<3} {row['failed']:>6} {row['wall']:>9.1f} "
                f"{row['p50']:>6.1f} {row['p95']:>6.1f} {row['max']:>6.1f} "
                f"{row['wall'] / base['wall']:>5.2f}x {row['p50'] / base['p50']:>5.2f}x "
                f"{row['stop']:>7.1f} {row['lc']:>5}/{row['lv']}"
            )
            for r in rounds:
                for e in r["errors"][:3]:
                    lines.append(f"   {system}: {e}")
    if "restart" in data:
        restart = data["restart"]
        n = data["args"]["servers"]
        lines.append(
            f"Hub restart with {n} servers running (proxy and containers kept): seconds from the "
            "hub process start, median of the restarts; Docker API calls until all re-attached"
        )
        lines.append(
            f"{'system':<14} {'servers':>7} {'API':>6} {'1 user':>6} {'all':>6} {'re-att':>7} "
            f"{'CHP':>4} {'calls':>5}  by kind"
        )
        for system, res in restart.items():
            for key, running in (("with_servers", n), ("no_servers", 0)):
                rs = res.get(key) or []
                if not rs:
                    continue
                calls = rs[-1]["calls"]
                lines.append(
                    f"{system:<14} {running:>7} {median([r['api_s'] for r in rs]):>6.2f} "
                    f"{median([r['user_ready_s'] for r in rs]):>6.2f} "
                    f"{median([r['all_ready_s'] for r in rs]):>6.2f} "
                    f"{min(r.get('ready_after', 0) for r in rs):>7} "
                    f"{min(r.get('reached', 0) for r in rs):>4} "
                    f"{median([r['calls_total'] for r in rs]):>5.0f}  "
                    + ", ".join(f"{k} x{v}" for k, v in calls.items())
                )
    for e in data["errors"]:
        lines.append(f"error: {e}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["storm", "restart"])
    parser.add_argument("--users", type=int, default=200, help="storm: users at once")
    parser.add_argument("--reps", type=int, default=1, help="storm: rounds per system")
    parser.add_argument("--servers", type=int, default=300, help="restart: servers running")
    parser.add_argument("--restarts", type=int, default=3, help="restart: restarts per case")
    parser.add_argument(
        "--systems",
        type=lambda s: s.split(","),
        default=["rustdocker", "dockerspawner"],
        help="rustdocker,dockerspawner",
    )
    parser.add_argument(
        "--rustdocker-python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="the Python whose venv's jupyterhub and rustdocker run (another checkout's, to "
        "compare before and after a change)",
    )
    args = parser.parse_args()
    run = Run(args)
    loop = asyncio.new_event_loop()
    task = loop.create_task(run.run())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        run.data["errors"].append("interrupted")
    except Exception as e:
        run.data["errors"].append(f"{e!r}")
        log(f"failed: {e!r}")
    finally:
        loop.run_until_complete(run.cleanup())
        loop.close()
    text = report(run.data)
    run.out.write_text(json.dumps(run.data, indent=1) + "\n")
    run.out.with_suffix(".txt").write_text(text + "\n")
    print(text)
    sys.exit(1 if run.data["errors"] else 0)


if __name__ == "__main__":
    main()
