"""SwarmSpawner: each user's server as a Docker swarm service (one task)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from jupyterhub.spawner import Spawner
from traitlets import Dict, Float, Unicode, default

from .spawner import DockerSpawner


class SwarmSpawner(DockerSpawner):
    """Runs each user's server as a swarm service, for hubs on a swarm manager.

    Configured like DockerSpawner (`c.DockerSpawner.*` and `c.SwarmSpawner.*`), with the
    service-level settings below. Differences from DockerSpawner's SwarmSpawner: named volumes
    are mounted as volumes (not as binds, which fails: jupyterhub/dockerspawner#536), `mounts`
    is honoured, and a task the swarm rejects fails the start at once with the swarm's reason.
    A service is always removed when the server stops (`remove` is always True).
    `extra_host_config` and `extra_create_kwargs` do not apply to services: use the
    `extra_*_spec` settings.
    """

    object_type: ClassVar[str] = "service"
    object_id_key: ClassVar[str] = "ID"

    extra_container_spec = Dict(
        help="""Extra fields of the service's `ContainerSpec` (docker-py `ContainerSpec`
        keywords such as `user`, `hostname`, `workdir`, `cap_add`, `secrets`, or Engine fields),
        replacing the computed ones of the same name.

        Example: `c.SwarmSpawner.extra_container_spec = {"user": "1000"}`
        """,
    ).tag(config=True)

    extra_resources_spec = Dict(
        help="""Extra resource settings (`cpu_limit`, `mem_limit`, `cpu_reservation`,
        `mem_reservation`, `generic_resources`, or Engine `Limits`/`Reservations`).

        Example: `c.SwarmSpawner.extra_resources_spec = {"mem_reservation": 268435456}`
        """,
    ).tag(config=True)

    extra_placement_spec = Dict(
        help="""Placement of the task (`constraints`, `preferences`, `platforms`,
        `maxreplicas`).

        Example: `c.SwarmSpawner.extra_placement_spec = {"constraints": ["node.labels.gpu==1"]}`
        """,
    ).tag(config=True)

    extra_task_spec = Dict(
        help="""Extra fields of the `TaskTemplate` (`restart_policy`, `log_driver`,
        `networks`, ...).

        Example: `c.SwarmSpawner.extra_task_spec = {"restart_policy": {"condition": "none"}}`
        """,
    ).tag(config=True)

    extra_endpoint_spec = Dict(
        help="""Extra fields of the `EndpointSpec` (`mode`, `ports`).

        Example: `c.SwarmSpawner.extra_endpoint_spec = {"mode": "dnsrr"}`
        """,
    ).tag(config=True)

    volume_driver = Unicode(
        "",
        help="""Volume driver for the named volumes of `volumes`, so they can live on shared
        storage reachable from every node.

        Example: `c.SwarmSpawner.volume_driver = "rexray"`
        """,
    ).tag(config=True)

    volume_driver_options = Dict(
        help="""Options of `volume_driver`.

        Example: `c.SwarmSpawner.volume_driver_options = {"size": "10"}`
        """,
    ).tag(config=True)

    cpu_guarantee = Float(
        None,
        allow_none=True,
        help="""CPU reservation in cores (the task's `Reservations.NanoCPUs`).

        Example: `c.Spawner.cpu_guarantee = 0.5`
        """,
    ).tag(config=True)

    @default("pull_policy")
    def _pull_policy_default(self) -> str:
        # Nodes pull the image themselves when they run the task.
        return "skip"

    @default("network_name")
    def _network_name_default(self) -> str:
        # A service joins no network unless told: the swarm's ingress publishes its port.
        return str(self.networks[0]["name"]) if self.networks else ""

    @default("remove")
    def _remove_default(self) -> bool:
        return True

    @property
    def will_resume(self) -> bool:
        return False

    @property
    def service_id(self) -> str:
        return self.object_id

    @property
    def service_name(self) -> str:
        return self.object_name

    def _swarm_extras(self) -> dict[str, Any]:
        return {
            "cpu_guarantee": self.cpu_guarantee,
            "extra_container_spec": dict(self.extra_container_spec),
            "extra_resources_spec": dict(self.extra_resources_spec),
            "extra_placement_spec": dict(self.extra_placement_spec),
            "extra_task_spec": dict(self.extra_task_spec),
            "extra_endpoint_spec": dict(self.extra_endpoint_spec),
            "volume_driver": self.volume_driver,
            "volume_driver_options": dict(self.volume_driver_options),
        }

    async def start(self) -> tuple[str, int]:
        spec = await self._start_spec()
        if spec["extra_host_config"] or spec["extra_create"]:
            self.log.warning(
                "SwarmSpawner: extra_host_config and extra_create_kwargs do not apply to "
                "services and are ignored; use the extra_*_spec settings"
            )
        spec["extra_host_config"] = {}
        spec["extra_create"] = {}
        spec["create_defaults"] = {}
        if self.post_start_cmd:
            self.log.warning("SwarmSpawner: post_start_cmd is not run for services")
        client = await self.docker_client()
        name = spec["name"]
        spec_json, swarm_json = json.dumps(spec), json.dumps(self._swarm_extras())
        service_id, ip, port, warnings = await self._until_done(
            client, name, lambda ticket: client.start_service(spec_json, swarm_json, ticket)
        )
        for warning in warnings:
            self.log.warning("%s: %s", self._log_name, warning)
        self.object_id = service_id
        self._persisted_name = name
        self.log.info("Started service %s (id %s) from %s", name, service_id[:12], self.image)
        if self.use_internal_hostname:
            return (self.internal_hostname, int(self.port))
        return (ip, port)

    async def stop(self, now: bool = False) -> None:
        self._set_start_stage(None)
        client = await self.docker_client()
        # Only this server's own service (see DockerSpawner.stop).
        await client.remove_service(
            self.object_name, self._labels(), adopt_unlabelled=self._state_records_container
        )
        self.object_id = ""
        self.clear_state()

    async def _poll_engine(self) -> int | None:
        client = await self.docker_client()
        status = await client.service_status(
            self.object_name, self._labels(), adopt_unlabelled=self._state_records_container
        )
        if status is None:
            return 0
        running, _state, exit_code = status
        return None if running else int(exit_code)

    async def get_url(self) -> str:
        # A service is reached by its name or published port, which do not change.
        return str(await Spawner.get_url(self))
