"""What every benchmark process shares: a minimal HTTP/1.1 client for the Docker socket, the
container body of the raw floor, statistics, the event-loop lag ticker and the package
fingerprint. (Spawners built without a hub are in hubless.py, shared with tests/.)

Standard library only, so this module runs both in the project venv (rustdocker, raw floor,
orchestrator) and in DockerSpawner's own venv.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

DOCKER_SOCKET = "/var/run/docker.sock"
LABEL_HUB = "org.rustdocker.hub"
LABEL_SYSTEM = "org.rustdocker.bench-system"
TINY_IMAGE = "rustdocker/tiny:latest"


# --------------------------------------------------------------------------- raw Docker client


class DockerHTTPError(Exception):
    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        self.status = status
        super().__init__(f"{method} {path}: HTTP {status}: {body[:300].decode(errors='replace')}")


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class RawDocker:
    """HTTP/1.1 straight to a unix socket, one connection per request (`Connection: close`), so
    any number of requests are in flight at once with no pool to queue behind."""

    def __init__(self, socket_path: str = DOCKER_SOCKET, version: str = "1.41") -> None:
        self.socket_path = socket_path
        self.version = version

    async def negotiate(self) -> str:
        """Use the engine's API version, capped at 1.41 (the engine this was written for)."""
        info = (await self.request("GET", "/version", versioned=False)).json()
        major, minor = (int(x) for x in str(info.get("ApiVersion", "1.41")).split("."))
        self.version = f"{major}.{minor}" if (major, minor) < (1, 41) else "1.41"
        return self.version

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ok: tuple[int, ...] = (200, 201, 204),
        on_chunk: Any = None,
        versioned: bool = True,
    ) -> Response:
        """One request. A status outside `ok` raises `DockerHTTPError`. With `on_chunk`, a
        chunked response body is handed over chunk by chunk as it arrives (pull progress)."""
        full_path = f"/v{self.version}{path}" if versioned else path
        payload = b""
        headers = [f"{method} {full_path} HTTP/1.1", "Host: docker", "Connection: close"]
        if body is not None:
            payload = json.dumps(body).encode()
            headers.append("Content-Type: application/json")
        if body is not None or method in {"POST", "PUT"}:
            headers.append(f"Content-Length: {len(payload)}")
        reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=1 << 20)
        try:
            writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + payload)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            fields = {}
            for line in lines[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            data = await _read_body(reader, status, fields, on_chunk)
        finally:
            writer.close()
        if status not in ok:
            raise DockerHTTPError(method, full_path, status, data)
        return Response(status, data)


async def _read_body(
    reader: asyncio.StreamReader, status: int, fields: dict[str, str], on_chunk: Any
) -> bytes:
    if status in (204, 304):
        return b""
    if "chunked" in fields.get("transfer-encoding", ""):
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            chunk = await reader.readexactly(size)
            await reader.readexactly(2)
            if on_chunk is not None:
                on_chunk(chunk)
            else:
                parts.append(chunk)
        return b"".join(parts)
    if "content-length" in fields:
        return await reader.readexactly(int(fields["content-length"]))
    return await reader.read()


# --------------------------------------------------------------------------- the raw floor's body


def hub_env(user: str, image: str, token: str | None = None) -> list[str]:
    """The environment JupyterHub gives a default server (the same keys and sizes a spawner
    sends, about 1 KB)."""
    token = token or uuid.uuid4().hex
    scopes = json.dumps([f"access:servers!server={user}/", f"access:servers!user={user}"])
    return [
        f"JPY_API_TOKEN={token}",
        f"JUPYTERHUB_ACTIVITY_URL=http://127.0.0.1:8081/hub/api/users/{user}/activity",
        f"JUPYTERHUB_API_TOKEN={token}",
        "JUPYTERHUB_API_URL=http://127.0.0.1:8081/hub/api",
        "JUPYTERHUB_BASE_URL=/",
        f"JUPYTERHUB_CLIENT_ID=jupyterhub-user-{user}",
        "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED=0",
        "JUPYTERHUB_HOST=",
        f"JUPYTERHUB_OAUTH_ACCESS_SCOPES={scopes}",
        f"JUPYTERHUB_OAUTH_CALLBACK_URL=/user/{user}/oauth_callback",
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES=[]",
        f"JUPYTERHUB_OAUTH_SCOPES={scopes}",
        "JUPYTERHUB_PUBLIC_HUB_URL=",
        "JUPYTERHUB_PUBLIC_URL=",
        "JUPYTERHUB_SERVER_NAME=",
        "JUPYTERHUB_SERVICE_URL=http://0.0.0.0:8888/",
        f"JUPYTERHUB_USER={user}",
        f"JUPYTER_IMAGE_SPEC={image}",
    ]


def container_body(
    image: str,
    user: str,
    labels: dict[str, str],
    env: list[str] | None = None,
    port: int = 8888,
    host_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The create body rustdocker sends for a default server (see `_core.build_create_body`):
    the image, the hub's environment, labels, the port published on `host_ip`, the bridge."""
    key = f"{port}/tcp"
    return {
        "Image": image,
        "Env": env if env is not None else hub_env(user, image),
        "Labels": labels,
        "ExposedPorts": {key: {}},
        "HostConfig": {
            "NetworkMode": "bridge",
            "PortBindings": {key: [{"HostIp": host_ip, "HostPort": ""}]},
        },
    }


def q(value: str) -> str:
    return quote(value, safe="")


async def list_containers(docker: RawDocker, label: str) -> list[dict[str, Any]]:
    filters = q(json.dumps({"label": [label]}))
    return (await docker.request("GET", f"/containers/json?all=1&filters={filters}")).json()  # type: ignore[no-any-return]


async def remove_containers(docker: RawDocker, label: str) -> int:
    """Force-remove every container carrying `label` (`key=value`); returns how many."""
    found = await list_containers(docker, label)
    await asyncio.gather(
        *(
            docker.request("DELETE", f"/containers/{c['Id']}?force=1", ok=(204, 404, 409))
            for c in found
        )
    )
    return len(found)


async def remove_containers_settled(docker: RawDocker, label: str) -> int:
    """`remove_containers`, then again after a pause until a pass finds none (three passes at
    most): a create still in flight when a process was stopped lands after the first listing.
    Returns how many were removed."""
    removed = 0
    for attempt in range(3):
        found = await remove_containers(docker, label)
        removed += found
        if attempt and not found:
            break
        await asyncio.sleep(1.0)
    return removed


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(latencies: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "max": max(latencies) if latencies else math.nan,
    }


def median(values: list[float]) -> float:
    return percentile(values, 50)


class LagMonitor:
    """A ticker task sleeping 1 ms at a time. Its worst overshoot is the loop's worst lag: what
    any other work of the hub (a request, a timer) waited at worst.

    Where that time went is measured too. `busy` is the loop thread's CPU time within one tick:
    code the loop ran without yielding (the worst such tick is reported). For the worst-lag
    tick, its own `busy` and, from /proc/thread-self/schedstat, the time the thread sat runnable
    on a run queue waiting for a CPU; the rest of that tick the thread was blocked, e.g. waiting
    for the GIL held by another thread.
    """

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._fd: int | None = None
        self._reset()

    def _reset(self) -> None:
        self.worst = 0.0
        self.worst_busy = 0.0
        self.worst_tick = (0.0, 0.0, 0.0)  # (lag, busy, runqueue wait) of the worst-lag tick

    def _runqueue_wait(self) -> float:
        if self._fd is None:
            return 0.0
        return int(os.pread(self._fd, 100, 0).split()[1]) / 1e9

    async def _tick(self) -> None:
        while True:
            before, cpu, waited = time.perf_counter(), time.thread_time(), self._runqueue_wait()
            await asyncio.sleep(self.interval)
            lag = time.perf_counter() - before - self.interval
            busy = time.thread_time() - cpu
            self.worst_busy = max(self.worst_busy, busy)
            if lag > self.worst:
                self.worst = lag
                self.worst_tick = (lag, busy, self._runqueue_wait() - waited)

    def start(self) -> None:
        self._reset()
        try:
            # Opened by the loop's thread, so it reads that thread's figures.
            self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def take(self) -> dict[str, float]:
        """Since `start` or the previous `take`, seconds: the worst lag, the worst busy tick,
        and the worst-lag tick's busy and run-queue wait."""
        out = {
            "loop_lag": self.worst,
            "loop_busy": self.worst_busy,
            "worst_tick_busy": self.worst_tick[1],
            "worst_tick_cpu_wait": self.worst_tick[2],
        }
        self._reset()
        return out

    async def stop(self) -> dict[str, float]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        return self.take()


# --------------------------------------------------------------------------- identity


def rustdocker_fingerprint() -> str:
    """A hash of the installed rustdocker package's files (Python and the native module),
    without importing it: tells whether the code under test changed during a run."""
    import hashlib
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("rustdocker")
    if spec is None or not spec.submodule_search_locations:
        return "not installed"
    digest = hashlib.sha256()
    for location in spec.submodule_search_locations:
        for path in sorted(Path(location).iterdir()):
            if path.suffix in {".py", ".so"}:
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
