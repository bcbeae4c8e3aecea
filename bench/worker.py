"""One system under test in a process of its own, driven by bench.py over stdin/stdout.

    python worker.py --system raw|rustdocker|dockerspawner --bench-id ID --proxy SOCK

`raw` and `rustdocker` run in the project venv, `dockerspawner` in bench/.venv-dockerspawner.
Each line on stdin is a JSON request `{"op": ..., ...}`; each answer is one JSON line on the
original stdout (anything else printed goes to stderr). Between requests the process is idle, so
the workers of the other systems do not disturb a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from common import (
    LABEL_HUB,
    LABEL_SYSTEM,
    TINY_IMAGE,
    LagMonitor,
    RawDocker,
    container_body,
    hub_env,
    q,
)
from hubless import make_spawner

# --------------------------------------------------------------------------- the systems


class RawServer:
    """The floor: the same container config, issued straight at the engine's socket."""

    def __init__(self, docker: RawDocker, name: str, user: str, image: str, labels: dict) -> None:
        self.docker = docker
        self.name = name
        self.user = user
        self.image = image
        self.labels = labels
        self.id = ""

    async def start(self) -> None:
        body = container_body(self.image, self.user, self.labels, hub_env(self.user, self.image))
        created = await self.docker.request(
            "POST", f"/containers/create?name={q(self.name)}", body, ok=(201,)
        )
        self.id = created.json()["Id"]
        await self.docker.request("POST", f"/containers/{self.id}/start", ok=(204,))

    async def stop(self) -> None:
        target = self.id or self.name
        await self.docker.request("POST", f"/containers/{target}/stop", ok=(204, 304, 404))
        await self.docker.request("DELETE", f"/containers/{target}", ok=(204, 404))
        self.id = ""

    async def poll(self) -> int | None:
        r = await self.docker.request("GET", f"/containers/{q(self.name)}/json", ok=(200, 404))
        if r.status == 404:
            return 0
        state = r.json()["State"]
        return None if state["Running"] else int(state["ExitCode"])


class RawInspectServer(RawServer):
    """The floor plus the one inspect a spawner needs to learn the published port."""

    async def start(self) -> None:
        await super().start()
        await self.docker.request("GET", f"/containers/{self.id}/json")


class RawPull:
    """The floor's "big user": the image pull alone, streamed from /images/create."""

    def __init__(self, docker: RawDocker, image: str) -> None:
        self.docker = docker
        self.image = image

    async def start(self) -> None:
        repo, tag = self.image.rsplit(":", 1)
        errors: list[str] = []

        def progress(chunk: bytes) -> None:
            for line in chunk.splitlines():
                if line.strip() and b'"error"' in line:
                    errors.append(line.decode(errors="replace"))

        await self.docker.request(
            "POST", f"/images/create?fromImage={q(repo)}&tag={q(tag)}", on_chunk=progress
        )
        if errors:
            raise RuntimeError(f"pull of {self.image} failed: {errors[0]}")

    async def stop(self) -> None:
        return None


class SpawnerServer:
    def __init__(self, spawner: Any) -> None:
        self.spawner = spawner

    async def start(self) -> None:
        await self.spawner.start()

    async def stop(self) -> None:
        await self.spawner.stop()

    async def poll(self) -> int | None:
        result = await self.spawner.poll()
        return result  # type: ignore[no-any-return]


class System:
    name = ""

    def __init__(self, bench_id: str, proxy: str) -> None:
        self.bench_id = bench_id
        self.proxy = proxy

    async def setup(self) -> dict[str, Any]:
        return {}

    def server(
        self,
        user: str,
        prefix: str,
        *,
        image: str = TINY_IMAGE,
        pull_policy: str | None = None,
        counted: bool = False,
    ) -> Any:
        raise NotImplementedError

    def big(self, prefix: str, image: str) -> Any:
        return self.server("big", prefix, image=image, pull_policy="always")


class Raw(System):
    name = "raw"

    def __init__(self, bench_id: str, proxy: str) -> None:
        super().__init__(bench_id, proxy)
        self.docker = RawDocker()
        self.counted = RawDocker(proxy)

    async def setup(self) -> dict[str, Any]:
        version = await self.docker.negotiate()
        self.counted.version = version
        return {"api_version": version}

    def server(self, user: str, prefix: str, *, image: str = TINY_IMAGE, **kw: Any) -> Any:
        docker = self.counted if kw.get("counted") else self.docker
        labels = {LABEL_HUB: self.bench_id, LABEL_SYSTEM: self.name}
        return RawServer(docker, f"{prefix}-{user}", user, image, labels)

    def big(self, prefix: str, image: str) -> Any:
        return RawPull(self.docker, image)


class RawInspect(Raw):
    name = "raw3"

    def server(self, user: str, prefix: str, *, image: str = TINY_IMAGE, **kw: Any) -> Any:
        server = super().server(user, prefix, image=image, **kw)
        server.__class__ = RawInspectServer
        return server


class RustDocker(System):
    name = "rustdocker"

    async def setup(self) -> dict[str, Any]:
        from common import rustdocker_fingerprint

        fingerprint = rustdocker_fingerprint()
        import rustdocker

        self.cls = rustdocker.DockerSpawner
        return {"rustdocker": rustdocker.__version__, "fingerprint": fingerprint}

    def server(
        self,
        user: str,
        prefix: str,
        *,
        image: str = TINY_IMAGE,
        pull_policy: str | None = None,
        counted: bool = False,
    ) -> Any:
        settings: dict[str, Any] = {
            "hub_id": self.bench_id,
            "image": image,
            "remove": True,
            "prefix": prefix,
        }
        if pull_policy:
            settings["pull_policy"] = pull_policy
        if counted:
            settings["docker_host"] = f"unix://{self.proxy}"
        return SpawnerServer(make_spawner(self.cls, user, settings))


class DockerSpawnerSystem(System):
    name = "dockerspawner"

    async def setup(self) -> dict[str, Any]:
        import dockerspawner

        class CountedDockerSpawner(dockerspawner.DockerSpawner):  # type: ignore[misc]
            # DockerSpawner keeps one client and one executor per class: this class's own,
            # talking to the counting proxy.
            _client = None
            _executor = None

        self.cls = dockerspawner.DockerSpawner
        self.counted_cls = CountedDockerSpawner
        return {"dockerspawner": dockerspawner.__version__}

    def server(
        self,
        user: str,
        prefix: str,
        *,
        image: str = TINY_IMAGE,
        pull_policy: str | None = None,
        counted: bool = False,
    ) -> Any:
        # DockerSpawner does not label its containers: the labels come in through
        # extra_create_kwargs (two labels, a few dozen bytes of the create body).
        settings: dict[str, Any] = {
            "image": image,
            "remove": True,
            "prefix": prefix,
            "extra_create_kwargs": {"labels": {LABEL_HUB: self.bench_id, LABEL_SYSTEM: self.name}},
        }
        if pull_policy:
            settings["pull_policy"] = pull_policy
        cls = self.cls
        if counted:
            cls = self.counted_cls
            settings["client_kwargs"] = {"base_url": f"unix://{self.proxy}"}
        return SpawnerServer(make_spawner(cls, user, settings))


SYSTEMS: dict[str, type[System]] = {
    "raw": Raw,
    "raw3": RawInspect,
    "rustdocker": RustDocker,
    "dockerspawner": DockerSpawnerSystem,
}


# --------------------------------------------------------------------------- measurements


async def timed_gather(calls: list[Callable[[], Awaitable[Any]]]) -> dict[str, Any]:
    """Run every call at once; each one's latency counts from the common start."""
    t0 = time.perf_counter()

    async def one(call: Callable[[], Awaitable[Any]]) -> float:
        await call()
        return time.perf_counter() - t0

    results = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
    wall = time.perf_counter() - t0
    errors = [r for r in results if isinstance(r, BaseException)]
    return {
        "wall": wall,
        "latencies": [r for r in results if isinstance(r, float)],
        "errors": len(errors),
        "first_error": "".join(traceback.format_exception_only(errors[0])).strip()
        if errors
        else None,
    }


class Worker:
    def __init__(self, system: System) -> None:
        self.system = system
        self.kept: list[Any] = []
        self.kept_users: list[str] = []
        self.lag = LagMonitor()

    async def proxy_count(self) -> int:
        r = await RawDocker(self.system.proxy).request("GET", "/_bench/count", versioned=False)
        return int(r.json()["total"])

    async def proxy_kinds(self) -> dict[str, int]:
        r = await RawDocker(self.system.proxy).request("GET", "/_bench/count", versioned=False)
        return r.json()["by_kind"]  # type: ignore[no-any-return]

    async def op_setup(self) -> dict[str, Any]:
        info = await self.system.setup()
        info["pid"] = os.getpid()
        info["python"] = sys.version.split()[0]
        return info

    async def op_storm(self, n: int, prefix: str, tag: str) -> dict[str, Any]:
        servers = [self.system.server(f"{tag}u{i:03d}", prefix) for i in range(n)]
        self.lag.start()
        await asyncio.sleep(0.02)
        self.lag.take()
        start = await timed_gather([s.start for s in servers])
        start.update(self.lag.take())
        await asyncio.sleep(0.5)
        self.lag.take()
        stop = await timed_gather([s.stop for s in servers])
        stop.update(await self.lag.stop())
        return {"start": start, "stop": stop}

    async def op_calls(self, prefix: str) -> dict[str, Any]:
        """Docker API calls of one start, poll and stop, counted by the proxy (after one
        warm-up start and stop through the same client, which negotiates the API version)."""
        warm = self.system.server("callswarm", prefix, counted=True)
        await warm.start()
        await warm.stop()
        server = self.system.server("calls", prefix, counted=True)
        out: dict[str, Any] = {}
        for step in ("start", "poll", "stop"):
            before = await self.proxy_kinds()
            await getattr(server, step)()
            after = await self.proxy_kinds()
            kinds = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            kinds = {k: v for k, v in kinds.items() if v}
            out[step] = {"calls": sum(kinds.values()), "kinds": kinds}
        return out

    async def op_poll_setup(self, n: int, prefix: str) -> dict[str, Any]:
        users = [f"p{i:03d}" for i in range(n)]
        servers = [self.system.server(u, prefix) for u in users]
        result = await timed_gather([s.start for s in servers])
        self.kept, self.kept_users = servers, users
        result["users"] = users
        return result

    async def op_poll_teardown(self) -> dict[str, Any]:
        result = await timed_gather([s.stop for s in self.kept])
        self.kept, self.kept_users = [], []
        return result

    async def op_poll_rounds(
        self, users: list[str], prefix: str, rounds: int, counted: bool
    ) -> dict[str, Any]:
        if self.kept and not counted:
            # The spawners that started the servers (what a hub that started them polls).
            servers = self.kept
        else:
            servers = [self.system.server(u, prefix, counted=counted) for u in users]
            for new, old in zip(servers, self.kept, strict=False):
                # As a restarted hub: the state its database kept.
                new.spawner.load_state(old.spawner.get_state())
        out = []
        self.lag.start()
        for _ in range(rounds + 1):
            before = await self.proxy_count() if counted else 0
            self.lag.take()
            t0 = time.perf_counter()
            results = await asyncio.gather(*(s.poll() for s in servers), return_exceptions=True)
            seconds = time.perf_counter() - t0
            lag = self.lag.take()
            after = await self.proxy_count() if counted else 0
            out.append(
                {
                    "seconds": seconds,
                    "calls": after - before if counted else None,
                    "running": sum(1 for r in results if r is None),
                    "errors": sum(1 for r in results if isinstance(r, BaseException)),
                    **lag,
                }
            )
            await asyncio.sleep(0.2)
        await self.lag.stop()
        return {"rounds": out, "servers": len(servers)}

    async def op_pull_spawn(
        self, big_image: str, prefix: str, delay: float, idle_samples: int, tag: str
    ) -> dict[str, Any]:
        """A tiny-image spawn on an idle engine (median of a few), then the same spawn for
        another user while the big image is being pulled for the first."""
        idle = []
        for k in range(idle_samples):
            server = self.system.server(f"{tag}idle{k}", prefix)
            t0 = time.perf_counter()
            await server.start()
            idle.append(time.perf_counter() - t0)
            await server.stop()
            await asyncio.sleep(0.3)
        big = self.system.big(prefix, big_image)
        tiny = self.system.server(f"{tag}during", prefix)
        t_pull = time.perf_counter()
        big_task = asyncio.create_task(big.start())
        await asyncio.sleep(delay)
        t0 = time.perf_counter()
        during_error = None
        try:
            await tiny.start()
        except Exception as e:
            during_error = repr(e)
        during = time.perf_counter() - t0
        overlapped = not big_task.done()
        pull_error = None
        try:
            await big_task
        except Exception as e:
            pull_error = repr(e)
        pull_seconds = time.perf_counter() - t_pull
        await asyncio.gather(tiny.stop(), big.stop(), return_exceptions=True)
        return {
            "idle": idle,
            "during": during,
            "spawn_ended_before_pull": overlapped,
            "pull_seconds": pull_seconds,
            "errors": [e for e in (during_error, pull_error) if e],
        }


async def serve(worker: Worker, out: Any) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        request = json.loads(line)
        op = request.pop("op")
        if op == "exit":
            break
        try:
            result = {"ok": True, "result": await getattr(worker, f"op_{op}")(**request)}
        except Exception as e:
            result = {"ok": False, "error": "".join(traceback.format_exception(e))}
        out.write(json.dumps(result) + "\n")
        out.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", choices=sorted(SYSTEMS), required=True)
    parser.add_argument("--bench-id", required=True)
    parser.add_argument("--proxy", required=True)
    args = parser.parse_args()
    # The protocol keeps the real stdout; anything printed goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    worker = Worker(SYSTEMS[args.system](args.bench_id, args.proxy))
    asyncio.run(serve(worker, out))


if __name__ == "__main__":
    main()
