"""SwarmSpawner: each user's server as a Docker swarm service (one task), on a swarm of one
node or many: placed by the operator's constraints (static, templated or from a callable), on
the node its volumes live on (`place_on_volume_node`), and reached through the routing mesh or
at its node's address (`publish_mode`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from jupyterhub.spawner import Spawner
from jupyterhub.traitlets import Callable as CallableTrait
from jupyterhub.utils import fmt_ip_url
from traitlets import Bool, CaselessStrEnum, Dict, Float, TraitError, Unicode, Union, default

from . import _core
from .imagechoice import maybe_await, refusal
from .spawner import DockerSpawner


def _server_words(name: str) -> str:
    return f"the server {name!r}" if name else "the default server"


# The starts, in this hub process, of a user's servers whose volumes no start has placed on a
# node yet, by (hub_id, user): they run one at a time, so that the second follows the node
# the first recorded instead of being placed on another one with its own copy of a volume they
# share. `[lock, starts using it]`; an entry goes when no start uses it.
_FIRST_PLACEMENTS: dict[tuple[str, str], list[Any]] = {}


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

    extra_placement_spec = Union(
        [CallableTrait(), Dict()],
        help="""Placement of the task (`constraints`, `preferences`, `platforms`,
        `maxreplicas`): which nodes may run a server.

        Every string is templated leniently (`{username}`, `{servername}`, ...: an unknown
        field is left as it is), and it may be a callable `f(spawner)`, possibly async,
        evaluated at every start: per-user placement, e.g. a group's servers on its own nodes.
        With `place_on_volume_node`, the node the server's volumes are on is added to these
        constraints (`node.id==...`); constraints that exclude that node fail the start
        before anything is made, naming the node. Template fields are what the user chose as
        much as what they are: `{servername}` and `{raw_servername}` (and a profile's free-form
        values) are the user's own choice, so a constraint made of them lets the user pick
        the node; key placement on `{username}` or on a callable's decision instead.

        Example::

            c.SwarmSpawner.extra_placement_spec = {"constraints": ["node.labels.gpu==1"]}

            def placement(spawner):
                if "gpu" in {g.name for g in spawner.user.groups}:
                    return {"constraints": ["node.labels.gpu==1"]}
                return {"constraints": ["node.role==worker"]}

            c.SwarmSpawner.extra_placement_spec = placement
        """,
    ).tag(config=True)

    publish_mode = CaselessStrEnum(
        ["ingress", "host"],
        default_value="ingress",
        help="""How the server's port is published when the hub reaches it by a published
        port (`use_internal_ip = False`).

        `"ingress"` (the default, DockerSpawner's): the swarm's routing mesh publishes the
        port on every node and forwards it to the task; the hub connects to `host_ip`. The
        routing mesh needs IPVS (the `ip_vs` kernel module) on every node. `"host"`: the
        port is published on the node that runs the task only (a port that node chooses), and
        the hub connects to that node's address (`Status.Addr` of `docker node inspect`) and
        that port, read from the task: no IPVS needed, and no traffic through other nodes, but
        the hub must reach every node. `use_internal_ip` defaults to False in host mode.

        Example: `c.SwarmSpawner.publish_mode = "host"`
        """,
    ).tag(config=True)

    place_on_volume_node = Union(
        [CallableTrait(), Bool()],
        default_value=True,
        help="""Start a server on the node its named volumes are on: a user's files follow
        the user.

        A `local` named volume (the default driver) is a directory on the node whose engine
        made it: a server started on another node would get an empty volume there. So each
        start records in the server's state the node its task ran on (when it has such
        volumes of its user's own), and the next start is constrained to that node
        (`node.id==...`). A named server that has no record follows the node the user's
        other servers recorded for a volume they share (a per-user volume such as
        `jupyterhub-user-{username}`); if they recorded two nodes, the start is refused,
        naming both. A user's servers with no record start one at a time, so that they all
        follow the first one's node. A server with no record whose volumes the hub's engine
        holds from before (made by DockerSpawner, or on a swarm of one node: the user's files
        are there) is held to the hub's node.

        When the node is drained, paused, down or gone, or the placement constraints exclude
        it (`node.id`, `.hostname`, `.role`, `.platform.*`, `.labels.*` and `engine.labels.*`
        are checked here; others, such as `node.ip`, are left to the swarm, whose task then
        waits, pending, until `start_timeout`), the start fails before anything is made, with
        a message naming the node and what to do. A node that joined the swarm again has a
        new id: the message names it. A swarm of one node made anew, whose node has the
        recorded hostname, takes the start, with a warning.

        Not applied to volumes on shared storage (a `volume_driver` or `driver_config` other
        than `local`, or `local` with a `type` of `nfs`, `nfs4`, `cifs`, `smb3`, `ceph` or
        `glusterfs`), to volumes every user shares (their name has no `{username}`) or to host
        directories (each node has its own: put them on storage every node mounts). The
        record lives in the hub's database: a hub that loses its database loses where the
        volumes are.

        False: no record is applied (each start records where it ran, so turning it on again
        keeps users on their last node). May be a callable `f(spawner)`, possibly async,
        returning a bool, e.g. to move one user, after copying their volume to another node.

        Example::

            c.SwarmSpawner.place_on_volume_node = lambda spawner: spawner.user.name != "alice"
        """,
    ).tag(config=True)

    extra_task_spec = Dict(
        help="""Extra fields of the `TaskTemplate` (`restart_policy`, `log_driver`,
        `networks`, ...), replacing the computed ones of the same name.

        Services are made with `restart_policy` `{"condition": "none"}`: the hub supervises
        the server, and `poll()` reports one that ended (DockerSpawner's SwarmSpawner leaves
        the swarm's default, which starts it again behind the hub's back). A `restart_policy`
        here replaces it; a task the swarm starts again is reached where it ran first only
        with `publish_mode = "ingress"` (in host mode it gets a new port, which the hub learns
        at its next restart), and one started again on another node before
        `place_on_volume_node` recorded a node leaves the user's files there.

        Example: `c.SwarmSpawner.extra_task_spec = {"log_driver": {"name": "journald"}}`
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

    @default("use_internal_ip")
    def _use_internal_ip_default(self) -> bool:
        # Host mode publishes the port on the task's node, and the hub connects to it there.
        if self.publish_mode == "host":
            return False
        return bool(super()._use_internal_ip_default())

    # ------------------------------------------------------------------ the node in state

    # The swarm node the server's own node-local volumes are on (`{"id": ..., "hostname": ...}`),
    # recorded by each start that has such volumes, kept across stops (state key
    # `volume_node`): see `place_on_volume_node`.
    _volume_node: dict[str, str] | None = None

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        node = state.get("volume_node")
        self._volume_node = (
            {"id": str(node["id"]), "hostname": str(node.get("hostname", ""))}
            if isinstance(node, dict) and node.get("id")
            else None
        )

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()
        if self._volume_node:
            state["volume_node"] = dict(self._volume_node)
        return state

    def _other_servers_states(self) -> dict[str, dict[str, Any]]:
        """The states of the user's other servers, by server name: as the hub's database holds
        them, or as their spawner objects hold them now (fresher, while one is starting)."""
        mine = self.name or ""
        states: dict[str, dict[str, Any]] = {}
        orm_spawners = getattr(getattr(self.user, "orm_user", None), "orm_spawners", None)
        if isinstance(orm_spawners, Mapping):
            for name, orm_spawner in orm_spawners.items():
                state = getattr(orm_spawner, "state", None)
                if name != mine and isinstance(state, dict):
                    states[name] = state
        live = getattr(self.user, "spawners", None)
        if isinstance(live, dict):
            # dict.items: JupyterHub's spawner dict makes a spawner for a missing key.
            for name, spawner in dict.items(live):
                if name == mine or spawner is self:
                    continue
                try:
                    state = spawner.get_state()
                except Exception:  # another class's spawner; the database has its state
                    continue
                if isinstance(state, dict):
                    states[name] = state
        return states

    def _volume_node_to_follow(self, volumes: list[str]) -> dict[str, Any] | None:
        """The node this start must run on for its node-local `volumes`, as `PinNode`: the one
        this server recorded; else the one the user's other servers recorded for a volume
        they share with it; None when nobody recorded one. Two nodes recorded for shared
        volumes refuse the start, naming both."""
        recorded: dict[str, tuple[str, list[str]]] = {}
        for name, state in sorted(self._other_servers_states().items()):
            node, names = state.get("volume_node"), state.get("volume_names")
            if not (isinstance(node, dict) and node.get("id") and isinstance(names, dict)):
                continue
            shared = sorted(set(volumes) & {str(v) for v in names.values()})
            if shared:
                hostname, why = recorded.setdefault(
                    str(node["id"]), (str(node.get("hostname", "")), [])
                )
                why.append(f"{_server_words(name)} (sharing {', '.join(map(repr, shared))})")
        if self._volume_node:
            mine = self._volume_node
            elsewhere = {i: r for i, r in recorded.items() if i != mine["id"]}
            for node_id, (hostname, why) in elsewhere.items():
                self.log.warning(
                    "%s: its volumes are on node %r (id %s), but %s recorded node %r (id %s): "
                    "those copies of the shared volumes differ; starting on %r",
                    self._log_name, mine["hostname"], mine["id"], " and ".join(why),
                    hostname, node_id, mine["hostname"],
                )  # fmt: skip
            return {**mine, "recorded_by": "this server's last start", "volumes": volumes}
        if not recorded:
            return None
        if len(recorded) > 1:
            nodes = "; ".join(
                f"node {hostname!r} (id {node_id}) by {' and '.join(why)}"
                for node_id, (hostname, why) in sorted(recorded.items())
            )
            raise refusal(
                f"{self._log_name} cannot start: the volumes it shares with the user's other "
                f"servers are on two swarm nodes, as recorded: {nodes}. Each node holds its own "
                "copy, so the server would see only one of them. An administrator can copy the "
                "files into one node's volume, then start the server with "
                "c.SwarmSpawner.place_on_volume_node = False for this user.",
                reason="volume-nodes-conflict",
                status_code=409,
            )
        ((node_id, (hostname, why)),) = recorded.items()
        return {
            "id": node_id,
            "hostname": hostname,
            "recorded_by": " and ".join(why),
            "volumes": volumes,
        }

    async def _places_on_volume_node(self) -> bool:
        value = self.place_on_volume_node
        if callable(value):
            value = await maybe_await(value(self))
        if not isinstance(value, bool):
            raise TraitError(
                f"{type(self).__name__}.place_on_volume_node returned {value!r}: a bool is required"
            )
        return value

    async def delete_forever(self) -> None:
        """As DockerSpawner's; with `remove_on_delete`, a warning when the server's volumes
        live on another swarm node than the hub's: only the hub's engine's copies could be
        removed, and the user's files are still on that node. Never raises."""
        await super().delete_forever()
        node = self._volume_node
        if not (self.remove_on_delete and node):
            return
        try:
            client = await self.docker_client()
            hub_node = await client.swarm_node()
        except Exception as e:  # not knowing the hub's node, say where the files are anyway
            self.log.debug("%s: the hub's swarm node is unknown: %s", self._log_name, e)
            hub_node = None
        if hub_node is not None and hub_node[0] == node["id"]:
            return
        names = " ".join(self._volume_names_to_delete()) or "VOLUME"
        self.log.warning(
            "Deleting %s: its volumes' files are on swarm node %r (id %s), not on the hub's "
            "engine, which removed only its own copies: they are still there; to delete them, "
            "run on that node: docker volume rm %s",
            self._log_name, node["hostname"], node["id"], names,
        )  # fmt: skip

    @property
    def will_resume(self) -> bool:
        return False

    @property
    def service_id(self) -> str:
        return self.object_id

    @property
    def service_name(self) -> str:
        return self.object_name

    async def _swarm_extras(self) -> dict[str, Any]:
        if self.publish_mode == "host" and self.use_internal_ip:
            raise TraitError(
                f"{type(self).__name__}.publish_mode = 'host' publishes the server's port on its "
                "node, but use_internal_ip = True reaches the server by its name on its "
                "network instead: set use_internal_ip = False (the default in host mode)"
            )
        return {
            "cpu_guarantee": self.cpu_guarantee,
            "extra_container_spec": dict(self.extra_container_spec),
            "extra_resources_spec": dict(self.extra_resources_spec),
            "extra_placement_spec": await self._rendered_extra("extra_placement_spec"),
            "extra_task_spec": dict(self.extra_task_spec),
            "extra_endpoint_spec": dict(self.extra_endpoint_spec),
            "volume_driver": self.volume_driver,
            "volume_driver_options": dict(self.volume_driver_options),
            "publish_mode": self.publish_mode,
        }

    @contextlib.asynccontextmanager
    async def _first_placement(self) -> AsyncIterator[None]:
        """Held by a start that no start recorded a node for, until it has recorded one: the
        user's other such starts wait (see `_FIRST_PLACEMENTS`)."""
        key = (str(self.hub_id), str(self.user.name))
        entry = _FIRST_PLACEMENTS.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            lock: asyncio.Lock = entry[0]
            if lock.locked():
                self.log.info(
                    "%s: waiting for the start of another of the user's servers, to follow the "
                    "swarm node it places their volumes on",
                    self._log_name,
                )
            async with lock:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                _FIRST_PLACEMENTS.pop(key, None)

    async def _swarm_start_settings(
        self, spec: dict[str, Any], stack: contextlib.AsyncExitStack
    ) -> tuple[dict[str, Any], list[str]]:
        """The swarm settings of this start, with the node its volumes are on when
        `place_on_volume_node` holds it there; and its node-local volumes. A start with no
        node to follow holds the user's first placement (in `stack`) until it is over."""
        extras = await self._swarm_extras()
        local = list(_core.node_local_volumes(json.dumps(spec), json.dumps(extras)))
        if local and await self._places_on_volume_node():
            pin = self._volume_node_to_follow(local)
            if pin is None:
                await stack.enter_async_context(self._first_placement())
                # Another of the user's servers may have recorded one meanwhile.
                pin = self._volume_node_to_follow(local)
            if pin is not None:
                extras["pin_node"] = pin
                self.log.info(
                    "%s: placed on swarm node %r (id %s), where its volumes %s are (%s)",
                    self._log_name, pin["hostname"], pin["id"], ", ".join(local),
                    pin["recorded_by"],
                )  # fmt: skip
            else:
                # The core holds it to the hub's node if the hub's engine has them from before.
                extras["unrecorded_volumes"] = local
        return extras, local

    async def start(self) -> tuple[str, int]:
        async with contextlib.AsyncExitStack() as stack:
            return await self._start_service(stack)

    async def _start_service(self, stack: contextlib.AsyncExitStack) -> tuple[str, int]:
        spec = await self._start_spec()
        try:
            extras, local_volumes = await self._swarm_start_settings(spec, stack)
        except BaseException:
            self._set_start_stage(None)
            raise
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
        spec_json, swarm_json = json.dumps(spec), json.dumps(extras)
        result = await self._until_done(
            client, name, lambda ticket: client.start_service(spec_json, swarm_json, ticket)
        )
        for warning in result.warnings:
            self.log.warning("%s: %s", self._log_name, warning)
        self.object_id = result.id
        self._persisted_name = name
        if local_volumes and result.node_id:
            # Where its volumes are now: the next start goes there (place_on_volume_node).
            self._volume_node = {"id": result.node_id, "hostname": result.node_hostname}
        self.log.info(
            "Started service %s (id %s) from %s on node %r",
            name, result.id[:12], self.image, result.node_hostname,
        )  # fmt: skip
        if self.use_internal_hostname:
            return (self.internal_hostname, int(self.port))
        return (result.ip, result.port)

    async def stop(self, now: bool = False) -> None:
        self._set_start_stage(None)
        client = await self.docker_client()
        # Only this server's own service (see DockerSpawner.stop). The call returns once the
        # swarm has ended its task (bounded), so the node's resources are free for a start.
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
        running, state, exit_code, node = status
        if state == "node-down" and not self._node_down_logged:
            self.log.warning(
                "%s: its swarm node %s is down: reported ended (the swarm shows its task "
                "running until the node is back)",
                self._log_name,
                node,
            )
        self._node_down_logged = state == "node-down"
        return None if running else int(exit_code)

    _node_down_logged = False

    async def get_url(self) -> str:
        """The server's URL. In host mode it is re-read from the swarm (the node the task runs
        on and the port it published there); otherwise the service is reached by its name or
        the routing mesh's published port, which do not change. Never raises: without an
        answer from the swarm it is the stored URL."""
        if self.server is None or self.use_internal_ip or self.publish_mode != "host":
            return str(await Spawner.get_url(self))
        try:
            client = await self.docker_client()
            address = await client.service_address(
                self.object_name, self._labels(), int(self.port), self.publish_mode,
                self.use_internal_ip, self.host_ip,
                adopt_unlabelled=self._state_records_container,
            )  # fmt: skip
        except Exception as e:
            self.log.warning(
                "%s: using its stored URL; the swarm could not give its address: %s",
                self._log_name,
                e,
            )
            address = None
        if address is None:
            return str(await Spawner.get_url(self))
        ip, port = address
        if self.use_internal_hostname:
            ip, port = self.internal_hostname, int(self.port)
        proto = "https" if self.internal_ssl else "http"
        return f"{proto}://{fmt_ip_url(ip)}:{port}{self.server.base_url}"
