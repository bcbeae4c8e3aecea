"""One real spawn from an installed rustdocker, as a release check: what `pip install rustdocker`
gives an operator must start, poll and stop a server on the Docker engine.

    python scripts/smoke-spawn.py [IMAGE]

Run by scripts/check-wheel.sh in a fresh venv holding only the wheel and its dependencies (no
Rust toolchain, no test extra): standard library, jupyterhub and rustdocker only. It starts a
server of the test image (default rustdocker/tiny:latest, images/build-tiny.sh) with a named
volume and a memory limit, checks what the engine shows with `docker inspect`, fetches the
server's page at the address start() returned, stops it with `remove = True`, and removes what
it made (by its own `org.rustdocker.hub` label) whatever happens. Exits non-zero on any failure.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
import uuid
from importlib.metadata import entry_points, version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import hubless

import rustdocker

HUB_ID = f"rd-smoke-{uuid.uuid4().hex[:8]}"
LABEL_HUB = "org.rustdocker.hub"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def exists(kind: str, name: str) -> bool:
    run = subprocess.run(["docker", kind, "inspect", name], capture_output=True, check=False)
    return run.returncode == 0


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode().strip()  # type: ignore[no-any-return]


def remove_own() -> None:
    """Removes this run's containers and volumes: its own, by its own hub label."""
    flt = f"label={LABEL_HUB}={HUB_ID}"
    for kind, listing in (("container", ["ps", "-aq"]), ("volume", ["volume", "ls", "-q"])):
        ids = docker(*listing, "--filter", flt).split()
        if ids:
            subprocess.run(["docker", kind, "rm", "-f", *ids], capture_output=True, check=False)


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"smoke spawn FAILED: {what}")
    print(f"  ok  {what}")


async def spawn(image: str) -> None:
    user = f"smoke{uuid.uuid4().hex[:6]}"
    settings = {
        "hub_id": HUB_ID,
        "image": image,
        "remove": True,
        "mem_limit": "256M",
        "volumes": {"jupyterhub-user-{username}": "/home/jovyan/work"},
    }
    spawner = hubless.make_spawner(rustdocker.Spawner, user, settings)
    ip, port = await spawner.start()
    name = spawner.object_name
    info = json.loads(docker("container", "inspect", name))[0]
    check(info["State"]["Running"] is True, f"container {name} running (docker inspect)")
    check(info["HostConfig"]["Memory"] == 256 * 1024**2, "memory limit 256 MiB on the container")
    check(info["Config"]["Labels"][LABEL_HUB] == HUB_ID, "labelled with its hub")
    volume = f"jupyterhub-user-{user}"
    mounts = {m.get("Name"): m["Destination"] for m in info["Mounts"]}
    check(mounts.get(volume) == "/home/jovyan/work", f"volume {volume} mounted")
    check(await spawner.poll() is None, "poll() says running")
    url = f"http://{ip}:{port}/"
    check(fetch(url) == "ok", f"the server answers at {url}")
    await spawner.stop()
    check(not exists("container", name), "stop() with remove=True removed the container")
    check(exists("volume", volume), "the user's volume is kept")
    check(await spawner.poll() == 0, "poll() says stopped")


def main() -> None:
    image = sys.argv[1] if len(sys.argv) > 1 else "rustdocker/tiny:latest"
    where = Path(rustdocker.__file__).parent
    print(f"rustdocker {rustdocker.__version__} from {where}")
    check(version("rustdocker") == rustdocker.__version__, "package metadata and __version__ agree")
    spawners = {e.name: e for e in entry_points(group="jupyterhub.spawners")}
    check(spawners["rustdocker"].load() is rustdocker.Spawner, "entry point `rustdocker` loads")
    try:
        asyncio.run(spawn(image))
    finally:
        remove_own()
    print("smoke spawn OK")


if __name__ == "__main__":
    main()
