"""The fault suite's pieces: a real JupyterHub spawning into an engine of the test's own
(tests/dockerd.py), the inventory that ends every scenario (the engine's containers and volumes
by label against the hub's own view of its servers), and a counting proxy in a thread of its
own, in front of that engine, which a test can cut.

The single-user server is the tiny image (busybox httpd): JupyterHub's wait for a server accepts
any answer below 500, and httpd answers `GET /user/<name>/` with a 404.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from proxy import CountingProxy

from dockerd import Dockerd
from e2e.hub import LABEL_HUB, LABEL_SERVER, LABEL_USER, Hub, wait_until

FAULT_CONFIG = """
# tests/faults: the tiny image on an engine of the test's own.
c.JupyterHub.log_level = "INFO"
c.DockerSpawner.image = {image!r}
c.DockerSpawner.docker_host = {host!r}
c.DockerSpawner.network_name = {network!r}
c.DockerSpawner.mounts = []
c.Spawner.start_timeout = {start_timeout}
c.Spawner.http_timeout = 30
# The hub polls every server this often (default 30 s): what a poll says shows up sooner.
c.Spawner.poll_interval = 2
c.JupyterHub.last_activity_interval = 3600
"""


class FaultHub(Hub):
    """A real hub (tests/e2e/hub.py's, with the examples' configuration) whose spawner runs the
    tiny image on `engine`, on its network `network`, through `host` (the engine itself, or a
    proxy in front of it)."""

    def __init__(
        self,
        workdir: Path,
        engine: Dockerd,
        network: str,
        image: str,
        host: str | None = None,
        start_timeout: float = 60,
        extra_config: str = "",
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.engine = engine
        self.network = network
        config = FAULT_CONFIG.format(
            image=image, host=host or engine.host, network=network, start_timeout=start_timeout
        )
        super().__init__(
            workdir,
            f"rd-faults-{uuid.uuid4().hex[:8]}",
            token=secrets.token_hex(16),
            password=secrets.token_urlsafe(12),
            extra_config=config + extra_config,
        )

    def set_config(self, extra: str) -> None:
        """Appends settings, read at the next start."""
        with self.config.open("a") as f:
            f.write("\n" + extra + "\n")

    def kill(self) -> None:
        """SIGKILL, then the proxy it leaves behind."""
        proc, self.proc = self.proc, None
        assert proc is not None
        proc.kill()
        proc.wait(30)
        self._stop_leftover_proxy()

    # ---------------------------------------------------------------- many users at once

    def create_users(self, names: Iterable[str]) -> None:
        r = self.api("POST", "/users", json={"usernames": list(names)})
        assert r.status_code == 201, r.text

    def request_starts(self, names: Iterable[str], **body: Any) -> dict[str, int]:
        """POSTs every user's start at once; the status each got (202 while it starts, 201
        once started, 4xx/5xx when refused)."""

        def post(name: str) -> tuple[str, int]:
            r = self.api("POST", f"/users/{name}/server", json=body, timeout=120)
            return name, r.status_code

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            return dict(pool.map(post, names))

    def request_stops(self, names: Iterable[str]) -> None:
        def delete(name: str) -> None:
            r = self.api("DELETE", f"/users/{name}/server", timeout=120)
            assert r.status_code in (202, 204, 400), f"stop {name}: {r.status_code} {r.text}"

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            list(pool.map(delete, names))

    def user_models(self) -> list[dict[str, Any]]:
        r = self.api("GET", "/users", params={"limit": 1000})
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def settled(self) -> bool:
        """No server is starting or stopping."""
        return not any(
            model.get("pending")
            for user in self.user_models()
            for model in user.get("servers", {}).values()
        )

    def wait_settled(self, timeout: float) -> None:
        wait_until(self.settled, timeout, "every start and stop to settle", interval=0.5)

    def ready_users(self) -> set[str]:
        return {
            u["name"]
            for u in self.user_models()
            if any(m.get("ready") for m in u.get("servers", {}).values())
        }

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


# ------------------------------------------------------------------ the inventory


@dataclass
class Inventory:
    """The engine's containers and volumes with the hub's label, and the hub's servers."""

    # (user, server) -> [{"id", "name", "running"}] on the engine
    containers: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    # (user, server) -> the hub's model of the server (ready, pending, state with object_id)
    servers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """What is wrong between the engine and the hub: a duplicate, a container the hub does not
        know about, a server the hub reports running without a running container of its own, a
        start or stop that has not settled."""
        found = []
        for key, cs in self.containers.items():
            if len(cs) > 1:
                found.append(f"{key}: {len(cs)} containers: {[c['name'] for c in cs]}")
            model = self.servers.get(key)
            if model is None:
                found.append(f"{key}: container(s) {[c['name'] for c in cs]} the hub doesn't know")
                continue
            recorded = (model.get("state") or {}).get("object_id")
            if recorded and all(c["id"] != recorded for c in cs):
                found.append(f"{key}: the hub records {recorded[:12]}, the engine has other ids")
        for key, model in self.servers.items():
            if model.get("pending"):
                found.append(f"{key}: still {model['pending']}")
                continue
            if model.get("ready") and not any(c["running"] for c in self.containers.get(key, [])):
                found.append(f"{key}: the hub reports it running; no running container")
        return found

    def running(self) -> set[str]:
        return {user for (user, _), cs in self.containers.items() if any(c["running"] for c in cs)}

    def __str__(self) -> str:
        lines = ["engine:"]
        for key, cs in sorted(self.containers.items()):
            lines.append(f"  {key}: {[(c['name'], c['running']) for c in cs]}")
        lines.append(f"  volumes: {sorted(self.volumes)}")
        lines.append("hub:")
        for key, m in sorted(self.servers.items()):
            lines.append(f"  {key}: ready={m.get('ready')} pending={m.get('pending')}")
        return "\n".join(lines)


def inventory(hub: FaultHub) -> Inventory:
    """The engine's containers and volumes carrying the hub's label (`docker inspect`), and the
    hub's servers from its REST API (with their state: the container each records)."""
    inv = Inventory()
    flt = f"label={LABEL_HUB}={hub.hub_id}"
    ids = hub.engine.docker("ps", "-aq", "--filter", flt).stdout.split()
    # A container may go between the listing and its inspect: the others are shown.
    found = hub.engine.docker("inspect", *ids, check=False).stdout if ids else ""
    for info in json.loads(found or "[]"):
        labels = info["Config"]["Labels"]
        key = (labels[LABEL_USER], labels.get(LABEL_SERVER, ""))
        inv.containers.setdefault(key, []).append(
            {
                "id": info["Id"],
                "name": info["Name"].lstrip("/"),
                "running": info["State"]["Running"],
            }
        )
    inv.volumes = hub.engine.docker("volume", "ls", "-q", "--filter", flt).stdout.split()
    for user in hub.user_models():
        for name, model in user.get("servers", {}).items():
            inv.servers[(user["name"], name)] = model
    return inv


def wait_consistent(hub: FaultHub, timeout: float) -> Inventory:
    """Waits until the engine and the hub agree (`Inventory.problems`), for at most `timeout` s
    (the hub polls each server every 2 s); fails the test with the last inventory."""
    deadline = time.monotonic() + timeout
    while True:
        inv = inventory(hub)
        problems = inv.problems()
        if not problems:
            return inv
        if time.monotonic() > deadline:
            pytest.fail(
                f"after {timeout:.0f} s the engine and the hub still disagree:\n  "
                + "\n  ".join(problems)
                + f"\n{inv}\n--- hub log:\n{hub.log_tail(80)}"
            )
        time.sleep(0.5)


def clean_up(hub: FaultHub, users: Iterable[str]) -> None:
    """Every server stopped through the hub; then nothing of the hub's is left on the engine
    but the users' volumes (never deleted by rustdocker: asserted, then removed here)."""
    users = list(users)
    volumes_before = set(inventory(hub).volumes)
    hub.request_stops(users)
    wait_until(
        lambda: not any(u.get("servers") for u in hub.user_models()), 120, "every server stopped"
    )
    inv = inventory(hub)
    assert inv.containers == {}, f"left on the engine after every server stopped:\n{inv}"
    assert volumes_before <= set(inv.volumes), "a user's volume was deleted"
    if inv.volumes:
        hub.engine.docker("volume", "rm", "-f", *inv.volumes, check=False)


def count_by_server(inv: Inventory) -> Counter[tuple[str, str]]:
    return Counter({key: len(cs) for key, cs in inv.containers.items()})


# ------------------------------------------------------------------ a proxy a test can cut


class ThreadedProxy:
    """bench/proxy.py's CountingProxy in front of an engine's socket, on an event loop in a
    thread of its own (the tests' hub calls are blocking): `cut()` drops every connection, as an
    engine restart or a network fault would."""

    def __init__(self, path: Path, upstream: Path) -> None:
        self.proxy = CountingProxy(path, str(upstream))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._call(self.proxy.start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    @property
    def url(self) -> str:
        return self.proxy.url

    def count(self, pattern: str) -> int:
        return self.proxy.count(pattern)

    def cut(self) -> None:
        self._call(self.proxy.drop_connections())

    def close(self) -> None:
        self._call(self.proxy.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
