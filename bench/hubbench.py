"""The JupyterHub part: a real hub (and its configurable-http-proxy) per spawner, on loopback
ports of its own, and N users' servers started at once through the REST API.

The tiny image serves as the single-user server: the hub's wait for a server
(`jupyterhub.utils.wait_for_http_server`) accepts any status below 500, and busybox httpd answers
`GET /user/<name>/` with a 404, so no special image is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

BENCH_DIR = Path(__file__).resolve().parent

CONFIG = """\
# Written by bench/hubbench.py.
import sys
sys.path.insert(0, {bench_dir!r})
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.JupyterHub.db_url = "sqlite:///{workdir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{workdir}/jupyterhub_cookie_secret"
c.ConfigurableHTTPProxy.pid_file = "{workdir}/proxy.pid"
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.services = [{{"name": "bench", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [
    {{
        "name": "bench-admin",
        "scopes": ["admin:users", "admin:servers", "list:users", "read:users", "read:servers"],
        "services": ["bench"],
    }}
]
c.JupyterHub.spawner_class = {spawner_class!r}
c.JupyterHub.last_activity_interval = 3600
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 120
c.JupyterHub.log_level = "INFO"
{spawner_config}
{extra_config}
"""

SPAWNER_CONFIG = {
    "rustdocker": """\
c.DockerSpawner.image = {image!r}
c.DockerSpawner.remove = True
c.DockerSpawner.hub_id = {bench_id!r}
c.DockerSpawner.prefix = {prefix!r}
""",
    "minimal": """\
c.MinimalSpawner.image = {image!r}
c.MinimalSpawner.bench_id = {bench_id!r}
c.MinimalSpawner.prefix = {prefix!r}
""",
    # DockerSpawner cannot label its containers: the label goes in through extra_create_kwargs.
    "dockerspawner": """\
c.DockerSpawner.image = {image!r}
c.DockerSpawner.remove = True
c.DockerSpawner.prefix = {prefix!r}
c.DockerSpawner.extra_create_kwargs = {{"labels": {{"org.rustdocker.hub": {bench_id!r}}}}}
""",
}
SPAWNER_CLASS = {
    "rustdocker": "rustdocker.Spawner",
    "minimal": "minimal_spawner.MinimalSpawner",
    "dockerspawner": "dockerspawner.DockerSpawner",
}
# The engine each spawner talks to (the counting proxy's socket), in its own setting.
DOCKER_HOST_CONFIG = {
    "rustdocker": "c.DockerSpawner.docker_host = {url!r}\n",
    "minimal": "c.MinimalSpawner.docker_socket = {path!r}\n",
    "dockerspawner": 'c.DockerSpawner.client_kwargs = {{"base_url": {url!r}}}\n',
}
# A configurable-http-proxy the benchmark runs itself (`external_proxy`): it outlives the hub,
# as in a deployment where the hub restarts and the proxy keeps routing users to their servers.
EXTERNAL_PROXY_CONFIG = """\
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.auth_token = {token!r}
c.JupyterHub.cleanup_servers = False
c.JupyterHub.cleanup_proxy = False
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Hub:
    """A JupyterHub process with `kind`'s spawner (rustdocker, minimal or dockerspawner).

    `python`: the interpreter whose venv's `jupyterhub` runs (DockerSpawner's own venv for
    dockerspawner). `docker_socket`: the engine socket the spawner talks to (the counting
    proxy's). `external_proxy`: configurable-http-proxy is started by this object, not by the
    hub, and the hub leaves servers and proxy running when it stops, so `restart()` is a hub
    restart with everything else kept. `extra_config`: more lines of jupyterhub_config.py.
    """

    def __init__(
        self,
        kind: str,
        workdir: Path,
        bench_id: str,
        prefix: str,
        image: str,
        log: Path,
        *,
        python: str | None = None,
        docker_socket: str | None = None,
        external_proxy: bool = False,
        extra_config: str = "",
    ) -> None:
        self.kind = kind
        self.workdir = workdir
        self.token = uuid.uuid4().hex
        self.port = free_port()
        self.hub_port = free_port()
        self.api_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hub/api"
        self.log = log
        self.python = python or sys.executable
        self.proc: subprocess.Popen[bytes] | None = None
        self.chp: subprocess.Popen[bytes] | None = None
        self.proxy_token = uuid.uuid4().hex if external_proxy else ""
        workdir.mkdir(parents=True, exist_ok=True)
        spawner_config = SPAWNER_CONFIG[kind].format(image=image, bench_id=bench_id, prefix=prefix)
        if docker_socket:
            spawner_config += DOCKER_HOST_CONFIG[kind].format(
                url=f"unix://{docker_socket}", path=docker_socket
            )
        if external_proxy:
            extra_config = EXTERNAL_PROXY_CONFIG.format(token=self.proxy_token) + extra_config
        (workdir / "jupyterhub_config.py").write_text(
            CONFIG.format(
                bench_dir=str(BENCH_DIR),
                port=self.port,
                hub_port=self.hub_port,
                api_port=self.api_port,
                workdir=workdir,
                token=self.token,
                spawner_class=SPAWNER_CLASS[kind],
                spawner_config=spawner_config,
                extra_config=extra_config,
            )
        )

    @property
    def pid(self) -> int | None:
        """The hub process's pid (the venv's `jupyterhub` script execs its Python)."""
        return None if self.proc is None else self.proc.pid

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def start_proxy(self) -> None:
        """The external configurable-http-proxy (see `external_proxy`)."""
        chp = shutil.which("configurable-http-proxy")
        if chp is None:
            raise RuntimeError("configurable-http-proxy is missing: npm install -g it")
        hub = f"http://127.0.0.1:{self.hub_port}"
        with self.log.with_suffix(".proxy.log").open("ab") as log:
            self.chp = subprocess.Popen(
                [
                    chp,
                    "--ip=127.0.0.1",
                    f"--port={self.port}",
                    "--api-ip=127.0.0.1",
                    f"--api-port={self.api_port}",
                    f"--default-target={hub}",
                    f"--error-target={hub}/hub/error",
                    "--log-level=warn",
                ],
                env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": self.proxy_token},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self) -> None:
        if self.proxy_token and self.chp is None:
            self.start_proxy()
        jupyterhub = str(Path(self.python).parent / "jupyterhub")
        with self.log.open("ab") as log:
            # A session of its own: the hub and the proxy it starts are one process group,
            # which `stop` can end as a whole.
            self.proc = subprocess.Popen(
                [jupyterhub, "-f", str(self.workdir / "jupyterhub_config.py")],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop_hub(self, timeout: float = 60) -> None:
        """Stops the hub process alone (SIGTERM, as a service manager does)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    async def wait_up(self, session: aiohttp.ClientSession, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"the {self.kind} hub exited ({self.proc.returncode}): {self.log}"
                )
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(self.url + "/", headers=self.headers) as r:
                    if r.status == 200:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {self.kind} hub did not answer in {timeout:.0f} s")
            await asyncio.sleep(0.25)

    async def create_users(self, session: aiohttp.ClientSession, users: list[str]) -> None:
        async with session.post(
            self.url + "/users", json={"usernames": users}, headers=self.headers
        ) as r:
            if r.status not in (201, 409):
                raise RuntimeError(f"creating users: HTTP {r.status}: {await r.text()}")

    async def users_in_state(self, session: aiohttp.ClientSession, state: str) -> set[str]:
        async with session.get(
            self.url + f"/users?state={state}&limit=1000", headers=self.headers
        ) as r:
            r.raise_for_status()
            return {u["name"] for u in await r.json()}

    async def round(
        self, session: aiohttp.ClientSession, users: list[str], timeout: float = 300
    ) -> dict[str, Any]:
        """All users' servers started at once; the time until every one is ready; then all
        stopped at once and the time until none is active."""
        errors: list[str] = []
        failed: set[str] = set()

        async def request(method: str, user: str) -> None:
            async with session.request(
                method, self.url + f"/users/{user}/server", json={}, headers=self.headers
            ) as r:
                if r.status not in (201, 202, 204):
                    errors.append(f"{method} {user}: HTTP {r.status}: {(await r.text())[:200]}")
                    failed.add(user)

        wanted = set(users)
        t0 = time.perf_counter()
        posts = asyncio.gather(*(request("POST", u) for u in users))
        ready_at: dict[str, float] = {}
        post_task = asyncio.ensure_future(posts)
        last_active_check = 0.0
        while len(ready_at) < len(users):
            now = time.perf_counter() - t0
            for name in (await self.users_in_state(session, "ready")) & wanted:
                ready_at.setdefault(name, now)
            if post_task.done() and now - last_active_check > 1.0:
                # A spawn that failed after its request was answered (202): no longer pending,
                # never ready.
                last_active_check = now
                active = await self.users_in_state(session, "active")
                for name in wanted - set(ready_at) - active - failed:
                    errors.append(f"{name}: the spawn ended without the server being ready")
                    failed.add(name)
            if now > timeout or (post_task.done() and len(ready_at) + len(failed) >= len(users)):
                break
            await asyncio.sleep(0.05)
        start_wall = max(ready_at.values()) if ready_at else float("nan")
        await post_task
        t1 = time.perf_counter()
        await asyncio.gather(*(request("DELETE", u) for u in users))
        while (await self.users_in_state(session, "active")) & wanted:
            if time.perf_counter() - t1 > timeout:
                errors.append("servers still active after the stop timeout")
                break
            await asyncio.sleep(0.05)
        stop_wall = time.perf_counter() - t1
        return {
            "start_wall": start_wall,
            "ready_latencies": sorted(ready_at.values()),
            "ready": len(ready_at),
            "stop_wall": stop_wall,
            "errors": errors,
        }

    def stop(self) -> None:
        """Stops the hub, whatever is left of its process group (the proxy it started) and the
        external proxy."""
        if self.proc is not None:
            pid = self.proc.pid
            self.stop_hub()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        if self.chp is not None:
            if self.chp.poll() is None:
                self.chp.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.chp.wait(10)
            self.chp = None
