"""SwarmSpawner on a real two-node swarm (tests/swarmnodes.py): the machine's dockerd as the
manager, a dockerd in a network namespace of the test's own as the worker.

Servers are reached through host-mode published ports at their node's address: the routing
mesh needs IPVS, which this machine's kernel lacks. The nodes are built once for the module
(about 2 s) and removed at its end, whatever happened. What each test asserts is what the
swarm and the node's engine show: `docker service ps`, the task's node, the worker's
containers and files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import uuid
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest
import swarmnodes
from jupyterhub import orm
from jupyterhub.objects import Server
from registry import Registry, docker_cli
from swarmnodes import SwarmNodes

import rustdocker

from conftest import (
    LABEL_HUB,
    SESSION_HUB_ID,
    TINY_IMAGE,
    docker,
    exists,
    http_get,
    make_spawner,
    skip_or_fail,
    wait_for,
    warnings_of,
)

pytestmark = pytest.mark.docker
T = TypeVar("T")

VOLUMES = {"jupyterhub-user-{username}": "/home/jovyan/work"}
ON_WORKER = {"constraints": ["node.role==worker"]}
# A start waits for its task without a bound of its own (the hub's start_timeout is it): a
# test bounds it, so that a node an earlier failure left unusable fails the test, not hangs it.
START_BOUND = 240


async def bounded(start: Awaitable[T]) -> T:
    return await asyncio.wait_for(start, START_BOUND)


@pytest.fixture(scope="module")
def nodes(
    engine: None, tiny_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SwarmNodes]:
    problem = swarmnodes.missing()
    if problem:
        skip_or_fail(problem)
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    if state != "inactive":
        skip_or_fail(
            f"the machine's dockerd is in a swarm (state {state!r}) that this test did not make"
        )
    topology = SwarmNodes(tmp_path_factory.mktemp("swarmnodes"))
    try:
        topology.start()
        topology.load_image(tiny_image)
        yield topology
    finally:
        for sid in docker(
            "service", "ls", "-q", "--filter", f"label={LABEL_HUB}={SESSION_HUB_ID}"
        ).stdout.split():
            docker("service", "rm", sid, check=False)
        topology.close()
        left = topology.leftovers()
        assert not left, f"the two-node topology left {left}"


@pytest.fixture(autouse=True)
def topology_intact(nodes: SwarmNodes) -> None:
    """Each test starts on the two nodes as the module made them; one an earlier test left
    broken fails the test at once, saying how."""
    problem = nodes.problem()
    if problem:
        pytest.fail(f"the two-node topology is broken (by an earlier test?): {problem}")


@pytest.fixture(scope="module")
def registry(nodes: SwarmNodes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry on the host's 127.0.0.1:P, and a second one on the worker's
    127.0.0.1:P serving the same storage: `127.0.0.1:P/...` is the same image on both nodes."""
    if shutil.which("docker-registry") is None:
        skip_or_fail("Debian's docker-registry is needed (apt-get install docker-registry)")
    r = Registry(tmp_path_factory.mktemp("registry"))
    r.start()
    try:
        nodes.serve_registry(r.workdir / "storage", r.port)
        yield r
    finally:
        r.stop()


@contextlib.contextmanager
def busy(role: str) -> Iterator[None]:
    """A task of another service on the node of `role`: the swarm's scheduler prefers the node
    with fewer tasks, so a server that nothing holds to that node lands on the other one."""
    name = f"rdt-busy-{uuid.uuid4().hex[:8]}"
    docker(
        "service", "create", "--detach", "--name", name, "--label", f"{LABEL_HUB}={SESSION_HUB_ID}",
        "--constraint", f"node.role=={role}", "--restart-condition", "none", TINY_IMAGE,
    )  # fmt: skip
    try:
        swarmnodes.wait_until(
            lambda: any(t["current"].startswith("Running") for t in tasks(name)),
            60,
            f"the {role}'s other task runs",
        )
        yield
    finally:
        docker("service", "rm", name, check=False)


def busy_worker() -> contextlib.AbstractContextManager[None]:
    """Left to itself, the swarm places a server on the manager."""
    return busy("worker")


def busy_manager() -> contextlib.AbstractContextManager[None]:
    """Left to itself, the swarm places a server on the worker."""
    return busy("manager")


def manager_container(name: str) -> str:
    """The task's container on the manager (the machine's engine)."""
    ids = docker(
        "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}"
    ).stdout.split()
    assert len(ids) == 1, ids
    return ids[0]


def spawner(user: str, servername: str = "", **settings: Any) -> Any:
    """A SwarmSpawner reaching its server by host-mode ports, at its node's address."""
    settings.setdefault("publish_mode", "host")
    return make_spawner(user, servername, cls=rustdocker.SwarmSpawner, **settings)


def restarted(old: Any, **settings: Any) -> Any:
    """The spawner a restarted hub makes for `old`'s server: the same configuration (as
    given), the state from the hub's database."""
    state = json.loads(json.dumps(old.get_state()))
    new = spawner(old.user.name, old.name, **settings)
    new.load_state(state)
    return new


def tasks(name: str) -> list[dict[str, str]]:
    """The service's tasks as `docker service ps` shows them: node, desired and current
    state."""
    out = docker(
        "service", "ps", name, "--no-trunc", "--format",
        "{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}",
    ).stdout  # fmt: skip
    return [
        dict(zip(("node", "desired", "current", "error"), line.split("\t"), strict=True))
        for line in out.splitlines()
    ]


def running_on(name: str) -> str:
    """The hostname of the node that runs the service's task."""
    running = [t for t in tasks(name) if t["current"].startswith("Running")]
    assert len(running) == 1, tasks(name)
    return running[0]["node"]


def task_inspect(name: str) -> dict[str, Any]:
    ids = docker("service", "ps", "-q", "--no-trunc", name).stdout.split()
    return json.loads(docker("inspect", ids[0]).stdout)[0]  # type: ignore[no-any-return]


def worker_container(nodes: SwarmNodes, name: str) -> str:
    """The task's container on the worker, from the worker's own engine."""
    assert nodes.worker is not None
    ids = nodes.worker.docker(
        "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}"
    ).stdout.split()
    assert len(ids) == 1, ids
    return ids[0]


def write_on_worker(nodes: SwarmNodes, name: str, path: str, text: str) -> None:
    """Writes `text` into `path` in the task's container on the worker."""
    assert nodes.worker is not None
    nodes.worker.docker("exec", worker_container(nodes, name), "sh", "-c", f"echo {text} > {path}")


def read_on_worker(nodes: SwarmNodes, name: str, path: str) -> str:
    """`path` in the task's container on the worker."""
    assert nodes.worker is not None
    return nodes.worker.docker("exec", worker_container(nodes, name), "cat", path).stdout.strip()


NOTES = "/home/jovyan/work/notes.txt"


async def a_file_on_the_worker(nodes: SwarmNodes, user: str, text: str) -> Any:
    """The user's default server, placed on the worker, writes `text` into `NOTES` in the
    user's volume there and is stopped; the spawner (its record names the worker)."""
    s = spawner(user, volumes=VOLUMES, extra_placement_spec=ON_WORKER)
    await bounded(s.start())
    assert running_on(s.object_name) == nodes.worker_hostname
    write_on_worker(nodes, s.object_name, NOTES, text)
    await s.stop()
    return s


async def started_with_the_file(nodes: SwarmNodes, s: Any, text: str) -> None:
    """`s` starts on the worker and finds `text` in `NOTES` (`a_file_on_the_worker`); stopped."""
    await bounded(s.start())
    try:
        assert running_on(s.object_name) == nodes.worker_hostname
        assert read_on_worker(nodes, s.object_name, NOTES) == text
    finally:
        await s.stop()


async def refusal(s: Any) -> str:
    """The message of the error `s.start()` fails with."""
    with pytest.raises(rustdocker.RustDockerError) as info:
        await bounded(s.start())
    return str(info.value)


def no_service(name: str) -> bool:
    return docker("service", "inspect", name, check=False).returncode != 0


def volumes_of(user: str) -> list[str]:
    """The manager's volumes labelled as `user`'s."""
    return sorted(
        docker("volume", "ls", "-q", "--filter", f"label=org.rustdocker.user={user}").stdout.split()
    )


# ------------------------------------------------------------------ placement, host mode


async def test_static_and_per_user_placement_on_two_nodes(nodes: SwarmNodes, unique: str) -> None:
    alice, bob = f"{unique}a", f"{unique}b"
    docker("node", "update", "--label-add", f"rdt-user={bob}", nodes.worker_id)

    async def per_user(s: Any) -> dict[str, Any]:
        await asyncio.sleep(0)  # an async callable, as an operator's may be
        return {"constraints": ["node.labels.rdt-user=={username}"]}

    on_manager = spawner(alice, extra_placement_spec={"constraints": ["node.role==manager"]})
    on_worker = spawner(bob, extra_placement_spec=per_user)
    assert on_worker.use_internal_ip is False  # host mode reaches the server by its port
    try:
        (ip_m, port_m), (ip_w, port_w) = await bounded(
            asyncio.gather(on_manager.start(), on_worker.start())
        )
        assert running_on(on_manager.object_name) == nodes.manager_hostname
        assert running_on(on_worker.object_name) == nodes.worker_hostname
        spec = json.loads(docker("service", "inspect", on_worker.object_name).stdout)[0]["Spec"]
        # The callable's template, rendered for the user.
        assert spec["TaskTemplate"]["Placement"]["Constraints"] == [f"node.labels.rdt-user=={bob}"]
        assert spec["EndpointSpec"]["Ports"][0]["PublishMode"] == "host"
        assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
        # Each server at its node's address and the port its task published there.
        for s, ip, port, addr in (
            (on_manager, ip_m, port_m, nodes.manager_addr),
            (on_worker, ip_w, port_w, nodes.worker_addr),
        ):
            published = task_inspect(s.object_name)["Status"]["PortStatus"]["Ports"]
            assert (ip, port) == (addr, published[0]["PublishedPort"])
            assert http_get(ip, port).strip() == "ok"
    finally:
        await asyncio.gather(on_manager.stop(), on_worker.stop(), return_exceptions=True)
        docker("node", "update", "--label-rm", "rdt-user", nodes.worker_id, check=False)
    assert no_service(on_manager.object_name) and no_service(on_worker.object_name)


# ------------------------------------------------------------------ images missing on a node


async def test_a_node_pulling_the_image_is_shown_and_an_image_no_node_has_fails_at_once(
    nodes: SwarmNodes, registry: Registry, unique: str
) -> None:
    repo = f"rustdocker-test/node-pull-{uuid.uuid4().hex[:8]}"
    # 3 MiB of random data, only in the registry (the manager's copy is removed by push_big).
    pushed = await asyncio.to_thread(
        registry.push_big, repo, TINY_IMAGE, 3, 1, {LABEL_HUB: SESSION_HUB_ID}
    )
    # The worker pulls it through a relay of 256 kB/s: about 12 s in `preparing`.
    slow_port = await asyncio.to_thread(nodes.throttle, registry.port, 256e3)
    image = pushed.replace(registry.host, f"127.0.0.1:{slow_port}")
    s = spawner(unique, image=image, extra_placement_spec=ON_WORKER, progress_interval=0.1)
    s._spawn_pending = True
    events: list[dict[str, Any]] = []

    async def follow() -> None:
        async for event in s.progress():
            events.append(event)

    follower = asyncio.create_task(follow())
    try:
        ip, port = await bounded(s.start())
        assert running_on(s.object_name) == nodes.worker_hostname
        assert http_get(ip, port).strip() == "ok"
    finally:
        s._spawn_pending = False
        await s.stop()
        await asyncio.wait_for(follower, 10)
    messages = [e["message"] for e in events]
    expected = (
        f"Waiting for the swarm to run the server (task preparing on node "
        f"'{nodes.worker_hostname}': the node pulls {image} if it does not have it)"
    )
    assert expected in messages, messages
    assert no_service(s.object_name)

    # An image no node can get: the task is rejected, the start fails with the node's name
    # and the swarm's reason, and no service is left.
    missing = f"{registry.host}/rustdocker-test/never-pushed-{uuid.uuid4().hex[:8]}:latest"
    s = spawner(f"{unique}x", image=missing, extra_placement_spec=ON_WORKER)
    message = await refusal(s)
    assert f"rejected on node '{nodes.worker_hostname}' (id {nodes.worker_id})" in message
    assert missing in message, message
    assert no_service(s.object_name)
    docker_cli("rmi", "-f", pushed, check=False)


# ------------------------------------------------------------------ stop, poll, hub restart


async def test_kill_poll_stop_and_a_hub_restart_on_the_worker(
    nodes: SwarmNodes, unique: str
) -> None:
    s = spawner(unique, extra_placement_spec=ON_WORKER)
    ip, port = await bounded(s.start())
    assert ip == nodes.worker_addr
    # The hub restarts: a new spawner from the saved state, its stored URL stale.
    s2 = restarted(s, extra_placement_spec=ON_WORKER)
    try:
        stored = orm.Server(
            proto="http", ip="127.0.0.1", port=1, base_url=f"/user/{unique}/", cookie_name=""
        )
        s2.server = Server(orm_server=stored)
        assert await s2.poll() is None
        url = await s2.get_url()
        assert url == f"http://{nodes.worker_addr}:{port}/user/{unique}/"
        assert http_get(nodes.worker_addr, port).strip() == "ok"
        # Killed on the worker, from outside the hub: reported with its exit code, and the
        # swarm does not start it again behind the hub's back.
        assert nodes.worker is not None
        nodes.worker.docker("kill", worker_container(nodes, s2.object_name))

        async def ended() -> bool:
            return await s2.poll() is not None

        await wait_for(ended, 60, "poll() sees the killed server", interval=0.5)
        assert await s2.poll() == 137
        assert [t["current"].split()[0] for t in tasks(s2.object_name)] == ["Failed"]
    finally:
        await s2.stop()
    assert no_service(s2.object_name)
    assert not nodes.worker.docker(
        "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={s2.object_name}"
    ).stdout.split()


async def test_a_stop_waits_for_the_task_so_a_restart_on_its_node_fits(
    nodes: SwarmNodes, unique: str
) -> None:
    """A reservation of most of the worker's memory: a start held to the worker fits only
    once the old task has released it."""
    memory = nodes.node(nodes.worker_id)["Description"]["Resources"]["MemoryBytes"]
    settings = {"volumes": VOLUMES, "mem_guarantee": int(memory * 0.6)}
    s = spawner(unique, extra_placement_spec=ON_WORKER, **settings)
    await bounded(s.start())
    name = s.object_name
    await s.stop()
    # When stop() returns, the swarm has ended the task: nothing of it runs on the worker.
    assert nodes.worker is not None
    assert not nodes.worker.docker(
        "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}"
    ).stdout.split()
    # Held to the worker by its volume's record (no placement of the operator's).
    s2 = restarted(s, **settings)
    try:
        await bounded(s2.start())
        assert running_on(name) == nodes.worker_hostname
    finally:
        await s2.stop()


# ------------------------------------------------------------------ a user's data follows the user


async def test_a_users_files_follow_the_user_to_their_node(nodes: SwarmNodes, unique: str) -> None:
    """The issue's scenario: a file written on the worker is there at each of ten starts after
    a hub restart, with no placement of the operator's; a drained node fails the start with a
    message; made active again, the server starts there."""
    first = await a_file_on_the_worker(nodes, unique, "kept")
    assert first.get_state()["volume_node"] == {
        "id": nodes.worker_id,
        "hostname": nodes.worker_hostname,
    }
    s = first
    with busy_worker():  # left to itself, the swarm would choose the manager
        for _ in range(10):
            s = restarted(s, volumes=VOLUMES)
            await started_with_the_file(nodes, s, "kept")
    volumes_before = volumes_of(unique)
    docker("node", "update", "--availability", "drain", nodes.worker_id)
    try:
        s = restarted(s, volumes=VOLUMES)
        message = await refusal(s)
        for part in (
            f"start the default server of user '{unique}'",
            f"jupyterhub-user-{unique}",
            f"'{nodes.worker_hostname}' (id {nodes.worker_id})",
            "is drained",
            f"docker node update --availability active {nodes.worker_id}",
            "place_on_volume_node = False",
        ):
            assert part in message, message
        assert no_service(s.object_name)
        assert volumes_of(unique) == volumes_before
    finally:
        docker("node", "update", "--availability", "active", nodes.worker_id)
    await bounded(s.start())
    try:
        assert running_on(s.object_name) == nodes.worker_hostname
        assert read_on_worker(nodes, s.object_name, NOTES) == "kept"
        # The worker made its own copy of the volume, labelled as the manager labels its own.
        labels = json.loads(
            nodes.worker.docker("volume", "inspect", f"jupyterhub-user-{unique}").stdout
        )[0]["Labels"]
        assert labels["org.rustdocker.user"] == unique
        assert labels["org.rustdocker.scope"] == "user"
    finally:
        await s.stop()


async def test_a_named_server_follows_the_node_of_the_users_volume(
    nodes: SwarmNodes, unique: str
) -> None:
    default = await a_file_on_the_worker(nodes, unique, "shared")
    # The user's named server, with no record of its own and no placement of the operator's.
    lab = spawner(unique, "lab", volumes=VOLUMES)
    lab.user = default.user
    default.user.spawners.update({"": default, "lab": lab})
    with busy_worker():  # left to itself, the swarm would choose the manager
        await bounded(lab.start())
    try:
        assert running_on(lab.object_name) == nodes.worker_hostname
        assert read_on_worker(nodes, lab.object_name, NOTES) == "shared"
        assert lab.get_state()["volume_node"]["id"] == nodes.worker_id
    finally:
        await lab.stop()


async def test_a_volume_of_another_user_is_refused_before_a_service_is_made(
    nodes: SwarmNodes, unique: str
) -> None:
    docker(
        "volume", "create", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}",
        "--label", "org.rustdocker.managed-by=rustdocker",
        "--label", "org.rustdocker.user=someone-else", f"jupyterhub-user-{unique}",
    )  # fmt: skip
    s = spawner(unique, volumes=VOLUMES)
    # Held to the worker by a record: the manager's check still comes first.
    s.load_state({"volume_node": {"id": nodes.worker_id, "hostname": nodes.worker_hostname}})
    with pytest.raises(rustdocker.RustDockerError, match="holds the files of another user"):
        await bounded(s.start())
    assert no_service(s.object_name)


async def test_constraints_excluding_the_volumes_node_cannot_be_placed(
    nodes: SwarmNodes, unique: str
) -> None:
    s = spawner(
        unique, volumes=VOLUMES, extra_placement_spec={"constraints": ["node.role==manager"]}
    )
    s.load_state({"volume_node": {"id": nodes.worker_id, "hostname": "old-name"}})
    message = await refusal(s)
    # The node by its hostname now, as the swarm shows it, and its id.
    assert f"'{nodes.worker_hostname}' (id {nodes.worker_id})" in message, message
    assert "'node.role==manager'" in message and "cannot be placed" in message, message
    assert no_service(s.object_name)
    assert not exists("volume", f"jupyterhub-user-{unique}")  # nothing was made


async def test_volumes_made_before_nodes_were_recorded_hold_a_start_to_the_hubs_node(
    nodes: SwarmNodes, unique: str
) -> None:
    """A hub that outgrew its machine: the user's volume on the hub's engine, made by
    DockerSpawner (no record of a node in the state), holds the first start to the hub's node,
    where the files are; a copy a SwarmSpawner start made there (a start that did not finish)
    holds nothing."""
    volume = f"jupyterhub-user-{unique}"
    docker("volume", "create", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", volume)
    docker(
        "run", "--rm", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", "-v", f"{volume}:/w",
        TINY_IMAGE, "sh", "-c", "echo mine > /w/notes.txt",
    )  # fmt: skip
    s = spawner(unique, volumes=VOLUMES)
    s.load_state({"object_name": f"jupyter-{unique}"})  # DockerSpawner's state: no node
    with busy_manager():  # left to itself, the swarm would choose the worker
        await bounded(s.start())
    try:
        assert running_on(s.object_name) == nodes.manager_hostname
        out = docker("exec", manager_container(s.object_name), "cat", "/home/jovyan/work/notes.txt")
        assert out.stdout.strip() == "mine"
        assert s.get_state()["volume_node"]["id"] == nodes.manager_id
    finally:
        await s.stop()
    other = f"{unique}n"
    docker(
        "volume", "create", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}",
        "--label", "org.rustdocker.node-recorded=true", f"jupyterhub-user-{other}",
    )  # fmt: skip
    s = spawner(other, volumes=VOLUMES)
    with busy_manager():
        await bounded(s.start())
    try:
        assert running_on(s.object_name) == nodes.worker_hostname
    finally:
        await s.stop()


async def test_a_users_first_starts_at_once_land_on_one_node(
    nodes: SwarmNodes, unique: str, logs: Any
) -> None:
    """Two servers sharing the user's volume, started at once with no node recorded: the
    second waits for the first and follows its node (the swarm would spread them over both)."""
    default = spawner(unique, volumes=VOLUMES)
    lab = spawner(unique, "lab", volumes=VOLUMES)
    lab.user = default.user
    default.user.spawners.update({"": default, "lab": lab})
    try:
        await bounded(asyncio.gather(default.start(), lab.start()))
        assert running_on(default.object_name) == running_on(lab.object_name)
        assert default.get_state()["volume_node"] == lab.get_state()["volume_node"]
    finally:
        await asyncio.gather(default.stop(), lab.stop(), return_exceptions=True)


async def test_deleting_a_server_whose_files_are_on_another_node_says_where_they_are(
    nodes: SwarmNodes, unique: str, logs: Any
) -> None:
    assert nodes.worker is not None
    volume = f"jupyterhub-user-{unique}"
    s = spawner(unique, volumes=VOLUMES, extra_placement_spec=ON_WORKER, remove_on_delete=True)
    await bounded(s.start())
    await s.stop()
    await s.delete_forever()
    assert not exists("volume", volume)  # the hub's engine's copy
    # The files are on the worker, which the hub's engine cannot reach: kept, and said so.
    assert nodes.worker.docker("volume", "inspect", volume, check=False).returncode == 0
    said = [w for w in warnings_of(logs) if "still there" in w]
    assert len(said) == 1 and nodes.worker_id in said[0] and volume in said[0], warnings_of(logs)
    # What the warning says to run there, once the worker has removed the task's container.
    worker = nodes.worker
    swarmnodes.wait_until(
        lambda: worker.docker("volume", "rm", volume, check=False).returncode == 0,
        60,
        "the volume is removed on the worker",
        interval=0.5,
    )


async def test_a_node_that_joined_again_under_a_new_id_is_named(
    nodes: SwarmNodes, unique: str
) -> None:
    s = await a_file_on_the_worker(nodes, unique, "kept")
    old = nodes.worker_id
    await asyncio.to_thread(nodes.rejoin_worker)
    new = nodes.worker_id
    assert new != old
    s = restarted(s, volumes=VOLUMES)
    message = await refusal(s)
    for part in (
        f"'{nodes.worker_hostname}' (id {old})",
        "is no longer in the swarm",
        f"under another id ({new})",
        f"node.id=={new}",
    ):
        assert part in message, message
    assert no_service(s.object_name)
    # As the message says: once on the new id, which the start records.
    s = restarted(
        s,
        volumes=VOLUMES,
        place_on_volume_node=False,
        extra_placement_spec={"constraints": [f"node.id=={new}"]},
    )
    await started_with_the_file(nodes, s, "kept")
    assert s.get_state()["volume_node"]["id"] == new


# ------------------------------------------------------------------ the worker goes down (last)


async def test_a_server_on_a_node_that_goes_down(nodes: SwarmNodes, unique: str, logs: Any) -> None:
    """The worker's engine stops: the swarm keeps showing the task running, poll() reports the
    server ended; a start held to the node fails, naming it; the node comes back."""
    assert nodes.worker is not None
    s = spawner(unique, volumes=VOLUMES, extra_placement_spec=ON_WORKER)
    await bounded(s.start())
    try:
        nodes.worker.stop()

        async def ended() -> bool:
            return await s.poll() is not None

        # The swarm marks a node down after its heartbeats stop (about 15 s here).
        await wait_for(ended, 120, "poll() sees the node down", interval=1)
        assert await s.poll() == 1
        assert any(
            "is down: reported ended" in w and nodes.worker_id in w for w in warnings_of(logs)
        ), warnings_of(logs)
        assert [t["current"].split()[0] for t in tasks(s.object_name)] == ["Running"]
        await asyncio.wait_for(s.stop(), 60)  # the hub's clean-up does not wait on the node
        assert no_service(s.object_name)
        s2 = restarted(s, volumes=VOLUMES)
        message = await refusal(s2)
        assert f"'{nodes.worker_hostname}' (id {nodes.worker_id})" in message, message
        assert "is down" in message and f"user '{unique}'" in message, message
        assert "Start the node's Docker engine again" in message, message
        assert no_service(s2.object_name)
    finally:
        await asyncio.to_thread(nodes.restart_worker)
    await bounded(s2.start())
    try:
        assert running_on(s2.object_name) == nodes.worker_hostname
    finally:
        await s2.stop()
