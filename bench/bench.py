"""The benchmark of issue 5: rustdocker against DockerSpawner 14 and the raw engine floor.

Run it with `bash bench/run.sh [--quick]` (which sets up what this needs). This process drives
one worker process per system (worker.py: `raw` and `rustdocker` in the project venv,
`dockerspawner` in bench/.venv-dockerspawner), the counting proxy (proxy.py), a local registry
and two JupyterHubs, prints the table and writes bench/results/latest.json. Every Docker object
it makes carries the label org.rustdocker.hub=<bench id>, and all of them are removed at the end,
also after a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from common import (
    LABEL_HUB,
    TINY_IMAGE,
    RawDocker,
    list_containers,
    median,
    q,
    remove_containers,
    remove_containers_settled,
    rustdocker_fingerprint,
    summarize,
)
from registry import Registry, docker_cli
from report import report

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SYSTEMS = ["raw", "raw3", "rustdocker", "dockerspawner"]
BIG_REPO = "rustdocker-bench-big"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


class WorkerProc:
    """A worker process (one system under test) and its JSON-lines channel."""

    def __init__(self, system: str, python: str, bench_id: str, proxy: str, log_dir: Path) -> None:
        self.system = system
        self.python = python
        self.args = ["--system", system, "--bench-id", bench_id, "--proxy", proxy]
        self.log_path = log_dir / f"worker-{system}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> dict[str, Any]:
        with self.log_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                self.python,
                str(BENCH / "worker.py"),
                *self.args,
                cwd=BENCH,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=1 << 26,
                # Its own session: a Ctrl-C reaches only this process, which ends the workers
                # and then removes what they left.
                start_new_session=True,
            )
        return await self.call("setup")  # type: ignore[no-any-return]

    async def call(self, op: str, **kwargs: Any) -> Any:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write((json.dumps({"op": op, **kwargs}) + "\n").encode())
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.system} died; see {self.log_path}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(f"worker {self.system}, {op}: {answer['error']}")
        return answer["result"]

    async def close(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"op": "exit"}\n')
            await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self.proc.wait(), 3)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


def bridge_exists(iface: str) -> bool:
    return Path(f"/sys/class/net/{iface}").exists()


# --------------------------------------------------------------------------- the run


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bench_id = f"rustdocker-bench-{uuid.uuid4().hex[:8]}"
        self.short = self.bench_id[-6:]
        self.label = f"{LABEL_HUB}={self.bench_id}"
        self.docker = RawDocker()
        self.tmp = Path(tempfile.mkdtemp(prefix="rustdocker-bench-"))
        self.results_dir = Path(args.out).resolve().parent
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.proxy_sock = str(self.tmp / "proxy.sock")
        self.proxy: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, WorkerProc] = {}
        self.registry: Registry | None = None
        self.hubs: list[Any] = []
        self.systems = [s for s in SYSTEMS if s in args.systems]
        self.prefix = {s: f"{s[:2]}{s[-1]}b{self.short}" for s in SYSTEMS}
        self.data: dict[str, Any] = {"meta": {}, "phases": {}, "errors": []}

    # ----------------------------------------------------------------- helpers

    async def settle(self, keep: int = 0, timeout: float = 120) -> None:
        """Wait until the engine holds no more than `keep` of this run's containers (an
        auto-removal may still be going on), then a short pause, so phases do not overlap."""
        deadline = time.monotonic() + timeout
        while len(await list_containers(self.docker, self.label)) > keep:
            if time.monotonic() > deadline:
                left = await remove_containers(self.docker, self.label)
                self.data["errors"].append(f"{left} containers were left over and removed")
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(self.args.pause)

    def start_proxy(self) -> None:
        self.proxy = subprocess.Popen(
            [sys.executable, str(BENCH / "proxy.py"), self.proxy_sock],
            stdout=subprocess.PIPE,
            stderr=(self.results_dir / "proxy.log").open("ab"),
            cwd=BENCH,
            start_new_session=True,
        )
        assert self.proxy.stdout is not None
        if self.proxy.stdout.readline().strip() != b"ready":
            raise RuntimeError("the counting proxy did not start")

    def order(self, k: int) -> list[str]:
        k %= len(self.systems)
        return self.systems[k:] + self.systems[:k]

    # ----------------------------------------------------------------- phases

    async def phase_setup(self) -> None:
        version = (await self.docker.request("GET", "/version", versioned=False)).json()
        bridge = (await self.docker.request("GET", "/networks/bridge")).json()
        iface = bridge.get("Options", {}).get("com.docker.network.bridge.name", "docker0")
        if not bridge_exists(iface):
            # Seen here: a second dockerd started with `--bridge=none` deletes the host's
            # docker0 on start-up, and the main engine cannot attach containers until it is
            # restarted (or the bridge is recreated with its address).
            raise RuntimeError(
                f"the engine's default bridge interface {iface} does not exist on the host, so "
                "no container can start on the bridge network: restart dockerd"
            )
        others = [
            c
            for c in (await self.docker.request("GET", "/containers/json")).json()
            if c.get("Labels", {}).get(LABEL_HUB) != self.bench_id
        ]
        self.data["meta"] = {
            "bench_id": self.bench_id,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "engine": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "loadavg_start": os.getloadavg(),
            "other_running_containers_at_start": len(others),
            "git": git_describe(),
            "args": vars(self.args),
        }
        if others:
            log(
                f"note: {len(others)} other containers are running on this engine; "
                "their activity adds noise"
            )
        self.start_proxy()
        pythons = {
            "raw": self.args.project_python,
            "raw3": self.args.project_python,
            "rustdocker": self.args.project_python,
            "dockerspawner": self.args.dockerspawner_python,
        }
        for system in self.systems:
            worker = WorkerProc(
                system, pythons[system], self.bench_id, self.proxy_sock, self.results_dir
            )
            self.workers[system] = worker
            self.data["meta"][f"worker_{system}"] = await worker.start()
        # The first creates after an image build are slower: warm the engine up, then each
        # worker (its client, connection pool and imports) with a few spawns of its own.
        await self.workers["raw"].call("storm", n=5, prefix=self.prefix["raw"], tag="w0")
        await self.settle()
        for system in self.systems:
            await self.workers[system].call("storm", n=3, prefix=self.prefix[system], tag="w1")
            await self.settle()

    async def phase_calls(self) -> None:
        out = {}
        for system in self.systems:
            out[system] = await self.workers[system].call("calls", prefix=self.prefix[system])
            await self.settle()
        self.data["phases"]["calls"] = out

    async def phase_storm(self) -> None:
        out: dict[str, dict[str, list[Any]]] = {s: {} for s in self.systems}
        self.data["phases"]["storm"] = out
        counter = 0
        for i, n in enumerate(self.args.ns):
            for rep in range(self.args.reps):
                for system in self.order(rep + i):
                    counter += 1
                    r = await self.workers[system].call(
                        "storm", n=n, prefix=self.prefix[system], tag=f"s{counter}"
                    )
                    out[system].setdefault(str(n), []).append(r)
                    start, stop = r["start"], r["stop"]
                    p50 = summarize(start["latencies"])["p50"]
                    lag = 1000 * max(start["loop_lag"], stop["loop_lag"])
                    errors = start["errors"] + stop["errors"]
                    log(
                        f"storm N={n:<3} rep {rep + 1} {system:<13} start {start['wall']:.2f} s "
                        f"(p50 {p50:.2f}), stop {stop['wall']:.2f} s, worst loop lag {lag:.1f} ms"
                        + (
                            f", {errors} errors: {start['first_error'] or stop['first_error']}"
                            if errors
                            else ""
                        )
                    )
                    await self.settle()

    async def phase_poll(self) -> None:
        n = self.args.poll_servers
        rounds = self.args.poll_rounds
        prefix = f"pob{self.short}"
        rd = self.workers["rustdocker"]
        log(f"poll: starting {n} servers with rustdocker")
        setup = await rd.call("poll_setup", n=n, prefix=prefix)
        users = setup.pop("users")
        out: dict[str, Any] = {"servers": n, "setup_start": setup}
        if setup["errors"]:
            raise RuntimeError(
                f"poll set-up: {setup['errors']} starts failed: {setup['first_error']}"
            )
        try:
            await asyncio.sleep(1.0)
            for counted in (False, True):
                # raw3 polls as raw does.
                for system in [s for s in self.systems if s != "raw3"]:
                    r = await self.workers[system].call(
                        "poll_rounds", users=users, prefix=prefix, rounds=rounds, counted=counted
                    )
                    key = "counted" if counted else "direct"
                    out.setdefault(system, {})[key] = r
                    first = 1000 * r["rounds"][0]["seconds"]
                    later = 1000 * median([x["seconds"] for x in r["rounds"][1:]])
                    calls = [x["calls"] for x in r["rounds"]]
                    log(
                        f"poll {key:<7} {system:<13} first {first:.1f} ms, then median "
                        f"{later:.1f} ms" + (f", calls/round {calls}" if counted else "")
                    )
        finally:
            out["teardown"] = await rd.call("poll_teardown")
            await self.settle()
        self.data["phases"]["poll"] = out

    def build_big_image(self) -> str:
        assert self.registry is not None
        image = f"127.0.0.1:{self.registry.port}/{BIG_REPO}:latest"
        ctx = self.tmp / "big"
        ctx.mkdir()
        layers = self.args.big_layers
        size_mib = self.args.big_mib // layers
        lines = [f"FROM {TINY_IMAGE}"]
        for k in range(layers):
            with (ctx / f"layer{k}").open("wb") as f:
                for _ in range(size_mib):
                    f.write(os.urandom(1 << 20))
            lines.append(f"COPY layer{k} /data/layer{k}")
        lines.append(f"LABEL {LABEL_HUB}={self.bench_id}")
        (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
        t0 = time.perf_counter()
        subprocess.run(
            ["docker", "build", "-q", "-t", image, str(ctx)],
            check=True,
            capture_output=True,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )
        shutil.rmtree(ctx)
        t1 = time.perf_counter()
        docker_cli("push", image)
        log(
            f"pull: built {image} ({self.args.big_mib} MiB random data in {layers} layers) in "
            f"{t1 - t0:.0f} s, pushed in {time.perf_counter() - t1:.0f} s"
        )
        return image

    async def phase_pull(self) -> None:
        self.registry = Registry(self.tmp / "registry", self.results_dir / "registry.log")
        self.registry.start()
        image = await asyncio.to_thread(self.build_big_image)
        out: dict[str, list[Any]] = {s: [] for s in self.systems}
        self.data["phases"]["pull"] = out
        for rep in range(self.args.pull_reps):
            for system in self.order(rep):
                # Never present when a pull starts: every system pulls the whole image.
                docker_cli("rmi", "-f", image, check=False)
                await asyncio.sleep(self.args.pause)
                r = await self.workers[system].call(
                    "pull_spawn",
                    big_image=image,
                    prefix=self.prefix[system],
                    delay=self.args.pull_delay,
                    idle_samples=3,
                    tag=f"pl{rep}",
                )
                out[system].append(r)
                log(
                    f"pull rep {rep + 1} {system:<13} idle spawn {median(r['idle']):.3f} s, during "
                    f"the pull {r['during']:.3f} s, pull {r['pull_seconds']:.1f} s"
                    + ("" if r["spawn_ended_before_pull"] else " (spawn ended after the pull)")
                    + (f", errors {r['errors']}" if r["errors"] else "")
                )
                await self.settle()
        docker_cli("rmi", "-f", image, check=False)

    def check_fingerprint(self, when: str) -> None:
        """The hubs load rustdocker anew: note when the installed code changed since the
        workers loaded it (someone rebuilt it during the run)."""
        loaded = self.data["meta"].get("worker_rustdocker", {}).get("fingerprint")
        now = rustdocker_fingerprint()
        if loaded and now != loaded:
            note = f"the installed rustdocker changed during the run ({loaded} -> {now}, {when})"
            self.data["errors"].append(note)
            log(f"note: {note}")

    async def phase_hub(self) -> None:
        import aiohttp
        from hubbench import Hub

        self.check_fingerprint("before the hub phase, which loads the new one")

        users = [f"h{i:03d}" for i in range(self.args.hub_users)]
        kinds = ["rustdocker", "minimal"]
        hubs = {}
        for kind in kinds:
            prefix = f"h{kind[:2]}{self.short}"
            hub = Hub(
                kind,
                self.tmp / f"hub-{kind}",
                self.bench_id,
                prefix,
                TINY_IMAGE,
                self.results_dir / f"hub-{kind}.log",
            )
            self.hubs.append(hub)
            hubs[kind] = hub
            hub.start()
        out: dict[str, list[Any]] = {k: [] for k in kinds}
        self.data["phases"]["hub"] = out
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            for hub in hubs.values():
                await hub.wait_up(session)
                await hub.create_users(session, users)
            await asyncio.sleep(2.0)
            for rep in range(self.args.hub_reps):
                for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                    r = await hubs[kind].round(session, users)
                    out[kind].append(r)
                    log(
                        f"hub rep {rep + 1} {kind:<10} {r['ready']}/{len(users)} ready in "
                        f"{r['start_wall']:.2f} s, all stopped in {r['stop_wall']:.2f} s"
                        + (f", errors {r['errors'][:3]}" if r["errors"] else "")
                    )
                    await self.settle()
        for hub in self.hubs:
            await asyncio.get_running_loop().run_in_executor(None, hub.stop)
        self.hubs = []

    # ----------------------------------------------------------------- run and clean up

    async def run(self) -> None:
        t0 = time.perf_counter()
        phases = [("setup", self.phase_setup), ("calls", self.phase_calls)]
        phases += [("storm", self.phase_storm), ("poll", self.phase_poll)]
        if not self.args.quick and not self.args.skip_pull:
            phases.append(("pull", self.phase_pull))
        if not self.args.quick and not self.args.skip_hub:
            phases.append(("hub", self.phase_hub))
        if self.args.only:
            phases = [p for p in phases if p[0] == "setup" or p[0] in self.args.only]
        try:
            for name, phase in phases:
                log(f"phase {name}")
                try:
                    await phase()
                except Exception as e:
                    self.data["errors"].append(f"phase {name}: {e!r}")
                    log(f"phase {name} failed:\n{traceback.format_exc()}")
                    if name == "setup":
                        break
                    with contextlib.suppress(Exception):
                        await self.settle(timeout=30)
        finally:
            await self.cleanup()
            self.data["meta"]["seconds"] = time.perf_counter() - t0
            self.check_fingerprint("at the end")
            self.data["meta"]["loadavg_end"] = os.getloadavg()

    async def cleanup(self) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(Exception):
                await worker.close()
        for hub in self.hubs:
            with contextlib.suppress(Exception):
                hub.stop()
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proxy.wait(10)
        if self.registry is not None:
            self.registry.stop()
        # Twice more after a pause: a create still in flight when a worker was killed lands
        # after the first listing.
        removed = await remove_containers_settled(self.docker, self.label)
        images = await self.docker.request(
            "GET", f"/images/json?filters={q(json.dumps({'label': [self.label]}))}"
        )
        for image in images.json():
            await self.docker.request(
                "DELETE", f"/images/{image['Id']}?force=1", ok=(200, 404, 409)
            )
        filters = q(json.dumps({"label": [self.label]}))
        volumes = (await self.docker.request("GET", f"/volumes?filters={filters}")).json()
        for volume in volumes.get("Volumes") or []:
            await self.docker.request("DELETE", f"/volumes/{q(volume['Name'])}", ok=(204, 404, 409))
        shutil.rmtree(self.tmp, ignore_errors=True)
        log(
            f"cleaned up: {removed} containers, {len(images.json())} images, "
            f"{len(volumes.get('Volumes') or [])} volumes labelled {self.label}"
        )


def git_describe() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "python"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + ("+dirty(src/python)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="N up to 10, 30 poll servers, no pull/hub"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each storm")
    parser.add_argument(
        "--systems",
        type=lambda s: s.split(","),
        default="raw,rustdocker,dockerspawner",
        help="systems to measure, of raw,raw3,rustdocker,dockerspawner (raw3 = the floor plus "
        "the inspect a spawner needs for the port); raw is always included",
    )
    parser.add_argument(
        "--ns",
        type=lambda s: [int(x) for x in s.split(",")],
        default=None,
        help="storm sizes (default 1,10,50,100; --quick 1,10)",
    )
    parser.add_argument(
        "--poll-servers", type=int, default=None, help="servers polled (default 300; --quick 30)"
    )
    parser.add_argument("--poll-rounds", type=int, default=5, help="rounds after the first")
    parser.add_argument("--pull-reps", type=int, default=4, help="pulls per system")
    parser.add_argument(
        "--pull-delay", type=float, default=1.0, help="seconds into the pull the spawn starts"
    )
    parser.add_argument("--big-mib", type=int, default=360, help="random data in the big image")
    parser.add_argument("--big-layers", type=int, default=4, help="layers it is split into")
    parser.add_argument("--hub-users", type=int, default=50, help="users spawned per hub round")
    parser.add_argument("--hub-reps", type=int, default=3, help="rounds per hub")
    parser.add_argument("--skip-pull", action="store_true", help="no spawn-during-pull phase")
    parser.add_argument("--skip-hub", action="store_true", help="no JupyterHub phase")
    parser.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=None,
        help="phases: calls,storm,poll,pull,hub",
    )
    parser.add_argument("--pause", type=float, default=0.7, help="seconds between measurements")
    parser.add_argument(
        "--out", default=str(BENCH / "results" / "latest.json"), help="the JSON (and .txt) file"
    )
    parser.add_argument("--project-python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument(
        "--dockerspawner-python", default=str(BENCH / ".venv-dockerspawner" / "bin" / "python")
    )
    args = parser.parse_args()
    if args.ns is None:
        args.ns = [1, 10] if args.quick else [1, 10, 50, 100]
    if args.poll_servers is None:
        args.poll_servers = 30 if args.quick else 300
    if args.quick:
        args.reps = min(args.reps, 2)
    if isinstance(args.systems, str):
        args.systems = args.systems.split(",")
    args.systems = ["raw", *(s for s in args.systems if s != "raw")]

    bench = Bench(args)
    loop = asyncio.new_event_loop()
    main_task = loop.create_task(bench.run())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main_task.cancel)
    try:
        loop.run_until_complete(main_task)
    except asyncio.CancelledError:
        log("interrupted; cleaned up")
    finally:
        loop.close()
    text, summary = report(bench.data)
    bench.data["summary"] = summary
    Path(args.out).write_text(json.dumps(bench.data, indent=1) + "\n")
    Path(args.out).with_suffix(".txt").write_text(text + "\n")
    print(text)
    log(f"results: {args.out}")


if __name__ == "__main__":
    main()
