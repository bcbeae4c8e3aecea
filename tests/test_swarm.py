"""SwarmSpawner: settings, and services on a real single-node swarm (`docker swarm init` on
127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets import TraitError

import rustdocker

from conftest import (
    LABEL_HUB,
    SESSION_HUB_ID,
    TINY_IMAGE,
    FakeClient,
    docker,
    exists,
    inspect,
    make_spawner,
    wait_for,
    warnings_of,
)


def test_swarm_settings_and_entry_point() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="jupyterhub.spawners")}
    assert eps["rustdocker-swarm"].load() is rustdocker.SwarmSpawner
    s = make_spawner(cls=rustdocker.SwarmSpawner, image=TINY_IMAGE)
    assert s.network_name == "" and s.use_internal_ip is True and s.object_type == "service"


VOLUMES = {"jupyterhub-user-{username}": "/home/jovyan/work"}


def swarm_spawner(user: str = "alice", servername: str = "", **settings: Any) -> Any:
    return make_spawner(user, servername, cls=rustdocker.SwarmSpawner, **settings)


def started_on(node_id: str, hostname: str) -> Callable[..., SimpleNamespace]:
    """A fake `start_service` answer: the task runs on that node."""

    def answer(spec_json: str, swarm_json: str, ticket: str) -> SimpleNamespace:
        return SimpleNamespace(
            id="svc", ip="10.0.0.2", port=30001, warnings=[], node_id=node_id,
            node_hostname=hostname,
        )  # fmt: skip

    return answer


def swarm_settings(fake_client: FakeClient) -> dict[str, Any]:
    """The swarm settings of the last start the core was handed."""
    return json.loads(fake_client.called("start_service")[-1]["swarm_json"])  # type: ignore[no-any-return]


async def test_the_volume_node_is_recorded_kept_and_followed(fake_client: FakeClient) -> None:
    fake_client.answers["start_service"] = started_on("n-worker", "worker-1")
    s = swarm_spawner(volumes=VOLUMES)
    await s.start()
    assert "pin_node" not in swarm_settings(fake_client)  # no record yet: anywhere
    await s.stop()
    s.clear_state()  # as the hub does after a stop
    state = json.loads(json.dumps(s.get_state()))
    assert state["volume_node"] == {"id": "n-worker", "hostname": "worker-1"}
    # The hub restarts: the next start is held to that node.
    s2 = swarm_spawner(volumes=VOLUMES)
    s2.load_state(state)
    await s2.start()
    assert swarm_settings(fake_client)["pin_node"] == {
        "id": "n-worker",
        "hostname": "worker-1",
        "recorded_by": "this server's last start",
        "volumes": ["jupyterhub-user-alice"],
    }
    for junk in ("n-worker", {"hostname": "h"}, {"id": ""}, None):
        s3 = swarm_spawner(volumes=VOLUMES)
        s3.load_state({"volume_node": junk})
        assert "volume_node" not in s3.get_state()


@pytest.mark.parametrize(
    "settings",
    [
        {"volume_driver": "rexray"},  # a volume plugin: storage every node reaches
        {"volume_driver": "local", "volume_driver_options": {"type": "nfs", "o": "addr=nfs"}},
        {"volumes": {"datasets": "/data"}},  # every user's: each node has a copy
        {"volumes": {"/srv/home/{username}": "/home/jovyan/work"}},  # a host directory
        {
            "volumes": {},
            "mounts": [
                {
                    "type": "volume",
                    "source": "home-{username}",
                    "target": "/home/jovyan/work",
                    "driver_config": {"name": "local", "options": {"type": "cifs"}},
                },
            ],
        },
    ],
)
async def test_volumes_on_shared_storage_or_of_everyone_do_not_hold_a_server(
    fake_client: FakeClient, settings: dict[str, Any]
) -> None:
    s = swarm_spawner(**{"volumes": VOLUMES, **settings})
    s.load_state({"volume_node": {"id": "n-worker", "hostname": "worker-1"}})
    await s.start()
    assert "pin_node" not in swarm_settings(fake_client)


async def test_a_start_with_no_record_asks_the_core_about_the_hubs_volumes(
    fake_client: FakeClient,
) -> None:
    """No node recorded: the core is handed the node-local volumes, to hold the start to the
    hub's node if the hub's engine has them from before (tests/test_swarm_nodes.py)."""
    s = swarm_spawner(volumes={**VOLUMES, "datasets": "/data"})
    await s.start()
    assert swarm_settings(fake_client)["unrecorded_volumes"] == ["jupyterhub-user-alice"]
    assert "pin_node" not in swarm_settings(fake_client)
    await s.stop()
    s.clear_state()
    # Recorded now: held to that node, nothing to ask.
    s2 = swarm_spawner(volumes=VOLUMES)
    s2.load_state(json.loads(json.dumps(s.get_state())))
    await asyncio.wait_for(s2.start(), 240)  # a start held to the old id would wait forever
    assert "unrecorded_volumes" not in swarm_settings(fake_client)
    # Not asked when the operator turned it off, or for volumes on shared storage.
    for settings in ({"place_on_volume_node": False}, {"volume_driver": "rexray"}):
        await swarm_spawner("bob", **{"volumes": VOLUMES, **settings}).start()
        assert "unrecorded_volumes" not in swarm_settings(fake_client)


async def test_a_users_first_starts_wait_for_each_other(fake_client: FakeClient) -> None:
    """Two of a user's servers with no node recorded, started at once: the second is handed
    the node the first recorded."""
    gate = asyncio.Event()
    calls = 0

    async def start_service(spec_json: str, swarm_json: str, ticket: str) -> SimpleNamespace:
        nonlocal calls
        calls += 1
        if calls == 1:
            await gate.wait()  # the first start's task takes a while to run
        return started_on("n-worker", "worker-1")(spec_json, swarm_json, ticket)

    fake_client.answers["start_service"] = start_service
    resolve = fake_client._later

    async def later(answer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = await resolve(answer, args, kwargs)
        return await result if asyncio.iscoroutine(result) else result

    fake_client._later = later  # type: ignore[method-assign]  # an answer that awaits
    default = swarm_spawner("carol", volumes=VOLUMES)
    lab = swarm_spawner("carol", "lab", volumes=VOLUMES)
    lab.user = default.user
    default.user.spawners = {"": default, "lab": lab}
    first = asyncio.create_task(default.start())
    await wait_for(lambda: calls == 1 or first.done(), 10, "the first start reaches the core")
    assert not first.done(), first
    second = asyncio.create_task(lab.start())
    from rustdocker import swarm as swarm_module

    def waiting() -> bool:
        entry = swarm_module._FIRST_PLACEMENTS.get((default.hub_id, "carol"))
        return second.done() or calls > 1 or (entry is not None and entry[1] == 2)

    # Either the second start waits for the first (the fix), or it reaches the core (the bug).
    await wait_for(waiting, 10, "the second start waits or reaches the core")
    assert calls == 1 and not second.done()  # the second waits for the first's node
    gate.set()
    await asyncio.gather(first, second)
    settings = [json.loads(c["swarm_json"]) for c in fake_client.called("start_service")]
    assert "pin_node" not in settings[0]
    assert settings[1]["pin_node"]["id"] == "n-worker"
    assert settings[1]["pin_node"]["recorded_by"].startswith("the default server")
    assert not swarm_module._FIRST_PLACEMENTS  # nothing kept once no start uses it


async def test_place_on_volume_node_off_or_from_a_callable(fake_client: FakeClient) -> None:
    fake_client.answers["start_service"] = started_on("n-manager", "manager-1")
    s = swarm_spawner(volumes=VOLUMES, place_on_volume_node=False)
    s.load_state({"volume_node": {"id": "n-worker", "hostname": "worker-1"}})
    await s.start()
    assert "pin_node" not in swarm_settings(fake_client)
    # Where it ran is recorded all the same: the user's files are there now.
    assert s.get_state()["volume_node"] == {"id": "n-manager", "hostname": "manager-1"}

    async def only_others(spawner: Any) -> bool:
        return bool(spawner.user.name != "alice")

    s = swarm_spawner(volumes=VOLUMES, place_on_volume_node=only_others)
    s.load_state({"volume_node": {"id": "n-worker", "hostname": "worker-1"}})
    await s.start()
    assert "pin_node" not in swarm_settings(fake_client)
    s = swarm_spawner("bob", volumes=VOLUMES, place_on_volume_node=only_others)
    s.load_state({"volume_node": {"id": "n-worker", "hostname": "worker-1"}})
    await s.start()
    assert swarm_settings(fake_client)["pin_node"]["id"] == "n-worker"
    s = swarm_spawner(volumes=VOLUMES, place_on_volume_node=lambda spawner: "yes")
    s.load_state({"volume_node": {"id": "n-worker", "hostname": "worker-1"}})
    with pytest.raises(TraitError, match="place_on_volume_node returned 'yes': a bool"):
        await s.start()


def _with_other_servers(s: Any, states: dict[str, dict[str, Any]]) -> Any:
    """The hub's database rows of the user's other servers."""
    s.user.orm_user.orm_spawners = {
        name: SimpleNamespace(state=state) for name, state in states.items()
    }
    return s


def _recorded(node: str, volume: str) -> dict[str, Any]:
    return {
        "volume_node": {"id": node, "hostname": f"host-{node}"},
        "volume_names": {"jupyterhub-user-{username}": volume},
        "volume_names_server": "",
    }


async def test_a_named_server_follows_its_users_other_servers(
    fake_client: FakeClient, logs: Any
) -> None:
    lab = _with_other_servers(
        swarm_spawner("bob", "lab", volumes=VOLUMES),
        {"": _recorded("n-worker", "jupyterhub-user-bob"), "x": {"object_id": "old"}},
    )
    await lab.start()
    assert swarm_settings(fake_client)["pin_node"] == {
        "id": "n-worker",
        "hostname": "host-n-worker",
        "recorded_by": "the default server (sharing 'jupyterhub-user-bob')",
        "volumes": ["jupyterhub-user-bob"],
    }
    # A spawner object of the hub's, fresher than the database, counts too.
    other = swarm_spawner("bob", "gpu", volumes=VOLUMES)
    other.load_state(_recorded("n-gpu", "jupyterhub-user-bob"))
    lab2 = _with_other_servers(swarm_spawner("bob", "lab2", volumes=VOLUMES), {})
    lab2.user.spawners = {"gpu": other, "lab2": lab2}
    await lab2.start()
    assert swarm_settings(fake_client)["pin_node"]["id"] == "n-gpu"
    # Volumes of its own (a name per server) follow nobody else.
    own = _with_other_servers(
        swarm_spawner("bob", "own", volumes={"home-{username}--{servername}": "/home/jovyan"}),
        {"": _recorded("n-worker", "jupyterhub-user-bob")},
    )
    await own.start()
    assert "pin_node" not in swarm_settings(fake_client)
    # Its own record wins over the others'; a disagreement is logged.
    mine = _with_other_servers(
        swarm_spawner("bob", "mine", volumes=VOLUMES),
        {"": _recorded("n-worker", "jupyterhub-user-bob")},
    )
    mine.load_state({"volume_node": {"id": "n-manager", "hostname": "manager-1"}})
    await mine.start()
    assert swarm_settings(fake_client)["pin_node"]["id"] == "n-manager"
    assert any("those copies of the shared volumes differ" in w for w in warnings_of(logs))


async def test_a_users_servers_on_two_nodes_refuse_a_new_one(fake_client: FakeClient) -> None:
    lab = _with_other_servers(
        swarm_spawner("bob", "lab", volumes=VOLUMES),
        {
            "": _recorded("n-worker", "jupyterhub-user-bob"),
            "gpu": _recorded("n-manager", "jupyterhub-user-bob"),
        },
    )
    with pytest.raises(Exception) as info:
        await lab.start()
    message = str(info.value)
    for part in (
        "node 'host-n-manager' (id n-manager) by the server 'gpu'",
        "node 'host-n-worker' (id n-worker) by the default server",
        "place_on_volume_node = False",
    ):
        assert part in message, message
    assert getattr(info.value, "status_code", None) == 409
    assert fake_client.called("start_service") == []  # refused before anything is made
    assert lab._start_stage is None


async def test_placement_from_a_callable_with_templates(fake_client: FakeClient) -> None:
    async def placement(spawner: Any) -> dict[str, Any]:
        return {"constraints": ["node.labels.team=={username}"], "preferences": []}

    s = swarm_spawner("Al", extra_placement_spec=placement)
    await s.start()
    assert swarm_settings(fake_client)["extra_placement_spec"] == {
        "constraints": ["node.labels.team==-41l"],  # {username} escaped
        "preferences": [],
    }
    s = swarm_spawner(extra_placement_spec={"constraints": ["node.hostname=={raw_username}"]})
    await s.start()
    assert swarm_settings(fake_client)["extra_placement_spec"]["constraints"] == [
        "node.hostname==alice"
    ]
    s = swarm_spawner(extra_placement_spec=lambda spawner: ["node.role==worker"])
    with pytest.raises(TraitError, match="extra_placement_spec returned"):
        await s.start()


async def test_publish_mode(fake_client: FakeClient) -> None:
    s = swarm_spawner(publish_mode="HOST")
    assert (s.publish_mode, s.use_internal_ip) == ("host", False)
    assert swarm_spawner().publish_mode == "ingress"
    await s.start()
    assert swarm_settings(fake_client)["publish_mode"] == "host"
    s = swarm_spawner(publish_mode="host", use_internal_ip=True)
    with pytest.raises(TraitError, match=r"publish_mode = 'host'.*use_internal_ip = False"):
        await s.start()
    with pytest.raises(TraitError):
        swarm_spawner(publish_mode="mesh")


async def test_poll_reports_a_server_on_a_node_that_is_down(
    fake_client: FakeClient, logs: Any
) -> None:
    s = swarm_spawner()
    s.load_state({"object_id": "svc", "object_name": "jupyter-alice"})
    fake_client.answers["service_status"] = (True, "running", 0, "'w' (id n)")
    assert await s.poll() is None
    fake_client.answers["service_status"] = (False, "node-down", 1, "'w' (id n)")
    assert await s.poll() == 1
    assert await s.poll() == 1
    downs = [w for w in warnings_of(logs) if "is down: reported ended" in w]
    assert len(downs) == 1 and "'w' (id n)" in downs[0], downs
    fake_client.answers["service_status"] = (False, "failed", 137, "'w' (id n)")
    assert await s.poll() == 137


async def test_get_url_in_host_mode_asks_the_swarm(fake_client: FakeClient, logs: Any) -> None:
    from jupyterhub import orm
    from jupyterhub.objects import Server

    s = swarm_spawner(publish_mode="host")
    s.load_state({"object_id": "svc", "object_name": "jupyter-alice"})
    s.server = Server(
        orm_server=orm.Server(
            proto="http", ip="10.0.0.9", port=1, base_url="/user/alice/", cookie_name=""
        )
    )
    fake_client.answers["service_address"] = ("10.0.0.2", 30001)
    assert await s.get_url() == "http://10.0.0.2:30001/user/alice/"
    fake_client.answers["service_address"] = rustdocker.RustDockerError("no answer")
    assert await s.get_url() == "http://10.0.0.9:1/user/alice/"
    assert any("using its stored URL" in w for w in warnings_of(logs))
    # Ingress: the published port is the service's and does not change.
    s = swarm_spawner(use_internal_ip=False)
    s.server = Server(
        orm_server=orm.Server(
            proto="http", ip="10.0.0.9", port=2, base_url="/user/alice/", cookie_name=""
        )
    )
    calls = len(fake_client.called("service_address"))
    assert await s.get_url() == "http://10.0.0.9:2/user/alice/"
    assert len(fake_client.called("service_address")) == calls


# ------------------------------------------------------------------ on the engine


@pytest.fixture(scope="module")
def swarm(engine: None) -> Iterator[bool]:
    """A single-node swarm on the machine's dockerd; whether this module made it (then it
    leaves it at the end, and its tests may make it anew)."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    joined_here = state != "active"
    if joined_here:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield joined_here
    finally:
        for sid in docker(
            "service", "ls", "-q", "--filter", f"label=org.rustdocker.hub={SESSION_HUB_ID}"
        ).stdout.split():
            docker("service", "rm", sid, check=False)
        if joined_here:
            docker("swarm", "leave", "--force", check=False)
            # Left behind by swarm mode; nothing else uses it.
            deadline = time.monotonic() + 20
            while exists("network", "docker_gwbridge") and time.monotonic() < deadline:
                docker("network", "rm", "docker_gwbridge", check=False)
                time.sleep(0.5)


def service(name: str) -> dict:
    return json.loads(docker("service", "inspect", name).stdout)[0]  # type: ignore[no-any-return]


@pytest.mark.docker
@pytest.mark.usefixtures("swarm")
async def test_service_lifecycle_with_volumes_and_limits(unique: str, tmp_path: Path) -> None:
    s = make_spawner(
        unique,
        cls=rustdocker.SwarmSpawner,
        volumes={
            "jupyterhub-user-{username}": "/home/jovyan/work",
            str(tmp_path): {"bind": "/data", "mode": "ro"},
        },
        mem_limit="256M",
        cpu_limit=0.5,
        use_internal_ip=False,
    )
    assert s.pull_policy == "skip" and s.will_resume is False
    ip, port = await s.start()
    info = service(s.object_name)
    task = info["Spec"]["TaskTemplate"]
    mounts = {m["Target"]: m for m in task["ContainerSpec"]["Mounts"]}
    assert mounts["/home/jovyan/work"]["Type"] == "volume"  # DockerSpawner makes it a bind
    assert mounts["/home/jovyan/work"]["Source"] == f"jupyterhub-user-{unique}"
    assert mounts["/data"]["Type"] == "bind" and mounts["/data"]["ReadOnly"] is True
    assert task["Resources"]["Limits"] == {"MemoryBytes": 256 * 1024**2, "NanoCPUs": 500_000_000}
    assert info["Spec"]["Labels"]["org.rustdocker.user"] == unique
    assert exists("volume", f"jupyterhub-user-{unique}")
    assert await s.poll() is None
    # The address returned is the port the swarm published for the server's port. (The routing
    # mesh that forwards it needs IPVS, which this test machine's kernel lacks, so the server is
    # reached from inside its container instead.)
    published = {p["TargetPort"]: p["PublishedPort"] for p in info["Endpoint"]["Ports"]}
    assert (ip, port) == ("127.0.0.1", published[8888])
    containers = docker(
        "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={s.object_name}"
    ).stdout.split()
    assert len(containers) == 1
    out = docker(
        "exec", containers[0], "sh", "-c", "busybox wget -qO- http://127.0.0.1:8888/"
    ).stdout
    assert out.strip() == "ok"
    await s.stop()
    assert docker("service", "inspect", s.object_name, check=False).returncode != 0
    assert await s.poll() == 0
    assert exists("volume", f"jupyterhub-user-{unique}")  # never deleted


@pytest.mark.docker
@pytest.mark.usefixtures("swarm")
async def test_rejected_task_fails_at_once_and_leaves_nothing(unique: str) -> None:
    s = make_spawner(
        unique,
        cls=rustdocker.SwarmSpawner,
        volumes={"/nonexistent/rustdocker/path": "/data"},  # the node refuses the mount
        use_internal_ip=False,
    )
    start = time.monotonic()
    with pytest.raises(rustdocker.RustDockerError) as info:
        await s.start()
    assert time.monotonic() - start < s.start_timeout  # not spinning until start_timeout
    assert "/nonexistent/rustdocker/path" in str(info.value)
    assert docker("service", "inspect", s.object_name, check=False).returncode != 0


@pytest.mark.docker
@pytest.mark.usefixtures("swarm")
@pytest.mark.parametrize("servername", ["x!=y", "a,b", "q'u\"ote", "a\nnode.role==manager"])
async def test_a_templated_constraint_cannot_be_widened_by_the_users_value(
    unique: str, servername: str
) -> None:
    """A server name the user chose, in a constraint: it stays one value of one constraint,
    and the swarm refuses the characters that would make it another (README, Placement)."""
    s = make_spawner(
        unique,
        servername,
        cls=rustdocker.SwarmSpawner,
        extra_placement_spec={"constraints": ["node.labels.team=={raw_servername}"]},
    )
    with pytest.raises(rustdocker.RustDockerError) as info:
        await s.start()
    assert "is invalid" in str(info.value), info.value
    assert docker("service", "inspect", s.object_name, check=False).returncode != 0


@pytest.mark.docker
@pytest.mark.usefixtures("swarm")
async def test_service_on_two_networks_with_aliases(unique: str) -> None:
    nets = [f"rustdocker-test-{unique}-{i}" for i in range(2)]
    for net in nets:
        docker("network", "create", "--driver", "overlay", "--attachable",
               "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", net)  # fmt: skip
    try:
        s = make_spawner(
            unique,
            cls=rustdocker.SwarmSpawner,
            networks=[{"name": nets[0], "aliases": ["{username}-nb"]}, nets[1]],
            # DNS answers with the task's own address (the VIP needs IPVS, which this test
            # machine's kernel lacks).
            extra_endpoint_spec={"mode": "dnsrr"},
        )
        assert s.network_name == nets[0] and s.use_internal_ip
        host, port = await s.start()
        assert (host, port) == (s.object_name, 8888)
        ids = {net: inspect("network", net)["Id"] for net in nets}
        attached = service(s.object_name)["Spec"]["TaskTemplate"]["Networks"]
        assert attached[0]["Target"] in (ids[nets[0]], nets[0])
        assert attached[0]["Aliases"] == [f"{unique}-nb"]
        assert attached[1]["Target"] in (ids[nets[1]], nets[1])
        assert not attached[1].get("Aliases")
        # The task's container is on both; the server answers by its name on the first.
        task = docker(
            "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={s.object_name}"
        ).stdout.split()[0]
        assert set(nets) <= set(inspect("container", task)["NetworkSettings"]["Networks"])
        for name in (host, f"{unique}-nb"):
            reply = docker(
                "run", "--rm", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", "--network", nets[0],
                TINY_IMAGE, "busybox", "wget", "-qO-", f"http://{name}:{port}/",
            )  # fmt: skip
            assert reply.stdout.strip() == "ok"
        await s.stop()
    finally:
        for net in nets:
            # The service's task leaves the network a moment after the service is removed.
            await wait_for(
                lambda net=net: (
                    docker("network", "rm", net, check=False).returncode == 0
                    or not exists("network", net)
                ),
                30,
                f"network {net} removed",
                interval=0.5,
            )


def node_id() -> str:
    return docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()


@pytest.mark.docker
async def test_a_swarm_of_one_node_made_anew_keeps_its_servers_starting(
    swarm: bool, unique: str, logs: Any
) -> None:
    """`docker swarm init` again (after `leave`) gives the only node a new id; the volumes a
    server's record places on the old id are on it still, so the start goes there."""
    if not swarm:
        pytest.skip("the machine's dockerd was in a swarm this module did not make")
    s = make_spawner(unique, cls=rustdocker.SwarmSpawner, volumes=VOLUMES, use_internal_ip=False)
    await s.start()
    await s.stop()
    old = node_id()
    assert s.get_state()["volume_node"]["id"] == old
    docker("swarm", "leave", "--force")
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    new = node_id()
    assert new != old
    s2 = make_spawner(unique, cls=rustdocker.SwarmSpawner, volumes=VOLUMES, use_internal_ip=False)
    s2.load_state(json.loads(json.dumps(s.get_state())))
    await asyncio.wait_for(s2.start(), 240)  # a start held to the old id would wait forever
    try:
        constraints = service(s2.object_name)["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
        assert constraints == [f"node.id=={new}"]
        assert any("made anew" in w and old in w and new in w for w in warnings_of(logs)), (
            warnings_of(logs)
        )
    finally:
        await s2.stop()
    assert s2.get_state()["volume_node"]["id"] == new
