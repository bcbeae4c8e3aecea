"""What a hub run leaves on the engine, and its removal: shared by hubscale.py and soak.py.

A run labels what it can (`org.rustdocker.hub=<bench id>`: containers through the spawner's
settings, volumes the spawner creates, the run's image), but an anonymous volume (an image's
`VOLUME`, which many notebook images declare) carries no label. `LeakWatch` follows the engine's
events from the start of the run: every container with the label, and every volume the engine
mounted into one of them. At the end a leak is a labelled container or volume, or a volume
mounted into one of the run's containers, that still exists: all provably the run's, so
`remove_all` may delete them.

Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from typing import Any

from common import LABEL_HUB, TINY_IMAGE, RawDocker, list_containers, q, remove_containers_settled


def build_volume_image(bench_id: str) -> str:
    """The tiny image plus a `VOLUME` (so every server gets an anonymous volume a stop must
    remove) and the run's label. Built in a second from the local tiny image."""
    tag = f"rustdocker-bench-vol:{bench_id[-8:]}"
    dockerfile = f"FROM {TINY_IMAGE}\nVOLUME /home/jovyan/work\nLABEL {LABEL_HUB}={bench_id}\n"
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, "-"],
        input=dockerfile,
        text=True,
        check=True,
        capture_output=True,
        env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    return tag


class LeakWatch:
    """Follows the engine's container and volume events from its creation on."""

    def __init__(self, docker: RawDocker, bench_id: str) -> None:
        self.docker = docker
        self.bench_id = bench_id
        self.label = f"{LABEL_HUB}={bench_id}"
        self.containers: set[str] = set()
        # volume name -> the run's container it was mounted into
        self.volumes: dict[str, str] = {}
        self._pending: dict[str, str] = {}  # mounts into containers not (yet) known as ours
        self._buffer = b""
        self._since = int(time.time()) - 1
        self._task: asyncio.Task[Any] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._follow())

    async def _follow(self) -> None:
        filters = q(json.dumps({"type": ["container", "volume"]}))
        while True:
            # `since`: replayed from the watch's creation, so nothing before the stream
            # opened is missed; a reconnect replays again (applying twice is harmless).
            with contextlib.suppress(Exception):
                await self.docker.request(
                    "GET",
                    f"/events?since={self._since}&filters={filters}",
                    on_chunk=self._chunk,
                )
            await asyncio.sleep(1)

    def _chunk(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                with contextlib.suppress(ValueError):
                    self._event(json.loads(line))

    def _event(self, event: dict[str, Any]) -> None:
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        if event.get("Type") == "container":
            if attributes.get(LABEL_HUB) == self.bench_id and actor.get("ID"):
                cid = actor["ID"]
                self.containers.add(cid)
                for volume, owner in list(self._pending.items()):
                    if owner == cid:
                        self.volumes[volume] = self._pending.pop(volume)
        elif event.get("Type") == "volume" and event.get("Action") == "mount":
            cid = attributes.get("container", "")
            target = self.volumes if cid in self.containers else self._pending
            target[actor.get("ID", "")] = cid

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _existing(self, names: list[str]) -> list[str]:
        async def exists(name: str) -> bool:
            r = await self.docker.request("GET", f"/volumes/{q(name)}", ok=(200, 404))
            return r.status == 200

        found = await asyncio.gather(*(exists(n) for n in names))
        return [n for n, f in zip(names, found, strict=True) if f]

    async def check(self) -> dict[str, Any]:
        """What is left: labelled containers, labelled volumes, and anonymous volumes mounted
        into the run's containers."""
        containers = await list_containers(self.docker, self.label)
        filters = q(json.dumps({"label": [self.label]}))
        labelled = (await self.docker.request("GET", f"/volumes?filters={filters}")).json()
        labelled_names = sorted(v["Name"] for v in labelled.get("Volumes") or [])
        anonymous = await self._existing(sorted(set(self.volumes) - set(labelled_names)))
        return {
            "containers": len(containers),
            "container_names": sorted(c["Names"][0].lstrip("/") for c in containers)[:20],
            "volumes": len(labelled_names) + len(anonymous),
            "labelled_volumes": labelled_names[:20],
            "anonymous_volumes": anonymous[:20],
            "containers_seen": len(self.containers),
            "anonymous_volumes_seen": len(self.volumes),
        }

    async def remove_all(self) -> dict[str, int]:
        """Removes the run's containers, then its volumes (labelled, or mounted only into the
        run's containers). Three passes for the containers: a create still in flight when a
        process was stopped lands after the first listing."""
        removed = await remove_containers_settled(self.docker, self.label)
        filters = q(json.dumps({"label": [self.label]}))
        labelled = (await self.docker.request("GET", f"/volumes?filters={filters}")).json()
        names = {v["Name"] for v in labelled.get("Volumes") or []}
        names |= set(await self._existing(sorted(self.volumes)))
        for name in names:
            await self.docker.request("DELETE", f"/volumes/{q(name)}", ok=(204, 404, 409))
        images = (await self.docker.request("GET", f"/images/json?filters={filters}")).json()
        for image in images:
            await self.docker.request(
                "DELETE", f"/images/{image['Id']}?force=1", ok=(200, 404, 409)
            )
        return {"containers": removed, "volumes": len(names), "images": len(images)}
