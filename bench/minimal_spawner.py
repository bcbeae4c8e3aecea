"""The baseline of the JupyterHub part: a minimal async spawner, no rustdocker.

It does the least a Docker spawner must: create the container (the same body as the raw floor,
with the hub's environment), start it, inspect it once for the published port; stop and remove
it; poll with one inspect. Every call is raw async HTTP/1.1 to the engine's socket (bench's
`common.RawDocker`), so no thread and no client library sit between the hub and the engine.
"""

from __future__ import annotations

from typing import Any

from common import LABEL_HUB, LABEL_SYSTEM, TINY_IMAGE, RawDocker, container_body, q
from jupyterhub.spawner import Spawner
from traitlets import Unicode


class MinimalSpawner(Spawner):  # type: ignore[misc]
    image = Unicode(TINY_IMAGE).tag(config=True)
    prefix = Unicode("minimal").tag(config=True)
    bench_id = Unicode("").tag(config=True)
    docker_socket = Unicode("/var/run/docker.sock").tag(config=True)
    container_id = Unicode("")

    @property
    def docker(self) -> RawDocker:
        return RawDocker(self.docker_socket)

    @property
    def container_name(self) -> str:
        return f"{self.prefix}-{self.user.name}"

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.container_id = state.get("container_id", "")

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()
        if self.container_id:
            state["container_id"] = self.container_id
        return state

    async def start(self) -> tuple[str, int]:
        env = [f"{k}={v}" for k, v in self.get_env().items()]
        labels = {LABEL_HUB: self.bench_id, LABEL_SYSTEM: "minimal"}
        body = container_body(self.image, self.user.name, labels, env)
        path = f"/containers/create?name={q(self.container_name)}"
        created = await self.docker.request("POST", path, body, ok=(201, 409))
        if created.status == 409:  # a leftover of an earlier run
            await self.docker.request(
                "DELETE", f"/containers/{q(self.container_name)}?force=1", ok=(204, 404)
            )
            created = await self.docker.request("POST", path, body, ok=(201,))
        self.container_id = created.json()["Id"]
        await self.docker.request("POST", f"/containers/{self.container_id}/start", ok=(204, 304))
        info = (await self.docker.request("GET", f"/containers/{self.container_id}/json")).json()
        binding = info["NetworkSettings"]["Ports"]["8888/tcp"][0]
        return ("127.0.0.1", int(binding["HostPort"]))

    async def stop(self, now: bool = False) -> None:
        target = self.container_id or q(self.container_name)
        await self.docker.request("POST", f"/containers/{target}/stop", ok=(204, 304, 404))
        await self.docker.request("DELETE", f"/containers/{target}", ok=(204, 404))
        self.container_id = ""
        self.clear_state()

    async def poll(self) -> int | None:
        if not self.container_id:
            return 0
        r = await self.docker.request("GET", f"/containers/{self.container_id}/json", ok=(200, 404))
        if r.status == 404:
            return 0
        state = r.json()["State"]
        return None if state["Running"] else int(state["ExitCode"])
