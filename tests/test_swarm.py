"""SwarmSpawner: settings, and services on a real single-node swarm (`docker swarm init` on
127.0.0.1)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import rustdocker

from conftest import (
    LABEL_HUB,
    SESSION_HUB_ID,
    TINY_IMAGE,
    docker,
    exists,
    inspect,
    make_spawner,
    wait_for,
)


def test_swarm_settings_and_entry_point() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="jupyterhub.spawners")}
    assert eps["rustdocker-swarm"].load() is rustdocker.SwarmSpawner
    s = make_spawner(cls=rustdocker.SwarmSpawner, image=TINY_IMAGE)
    assert s.network_name == "" and s.use_internal_ip is True and s.object_type == "service"


# ------------------------------------------------------------------ on the engine


@pytest.fixture(scope="module")
def swarm(engine: None) -> Iterator[None]:
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    joined_here = state != "active"
    if joined_here:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
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
