"""The network: ports and host_ip, internal IPs and hostnames on a user network, links, the
host network, and the address a server is reached at (get_url, get_ip_and_port)."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest

import rustdocker

from conftest import (
    LABEL_HUB,
    SESSION_HUB_ID,
    TINY_IMAGE,
    FakeClient,
    docker,
    http_get,
    inspect,
    make_spawner,
    warnings_of,
)


def test_use_internal_ip_dynamic_default() -> None:
    assert make_spawner().use_internal_ip is False
    assert make_spawner(network_name="host").use_internal_ip is False
    assert make_spawner(network_name="jhub").use_internal_ip is True
    assert make_spawner(network_name="jhub", use_internal_ip=False).use_internal_ip is False


def test_internal_hostname_and_ssl_alt_names() -> None:
    s = make_spawner("alice", "lab")
    assert s.use_internal_hostname is False
    assert s.internal_hostname == "jupyter-alice--lab"
    assert s.ssl_alt_names == ["DNS:jupyter-alice--lab"]
    s = make_spawner("alice", use_internal_hostname=True)
    assert s.use_internal_hostname is True
    ssl = make_spawner("bob")
    ssl.internal_ssl = True
    assert ssl.use_internal_hostname is True
    s.load_state({"object_id": "x", "object_name": "kept-name"})
    assert s.internal_hostname == "kept-name"


async def test_use_internal_hostname_returns_container_name(
    unique: str, fake_client: FakeClient
) -> None:
    """start() returns (name, port) instead of the core's address."""
    fake_client.answers["start_server"] = SimpleNamespace(
        id="c1",
        name=f"jupyter-{unique}",
        created=True,
        api_token=None,
        ip="1.2.3.4",
        port=5,
        warnings=[],
        config_changes=[],
        recreated=False,
        config_note=None,
    )
    s = make_spawner(unique, use_internal_hostname=True, port=8889)
    assert await s.start() == (f"jupyter-{unique}", 8889)
    s = make_spawner(unique)
    assert await s.start() == ("1.2.3.4", 5)


# ------------------------------------------------------------------ on the engine


@pytest.mark.docker
async def test_internal_ip_on_user_network(unique: str) -> None:
    net = f"rustdocker-test-{unique}"
    docker("network", "create", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", net)
    try:
        s = make_spawner(unique, network_name=net, remove=True)
        assert s.use_internal_ip
        ip, port = await s.start()
        info = inspect("container", s.object_name)
        assert info["HostConfig"]["NetworkMode"] == net
        assert ip == info["NetworkSettings"]["Networks"][net]["IPAddress"]
        assert port == 8888
        assert not info["HostConfig"].get("PortBindings")
        assert http_get(ip, port).strip() == "ok"
        await s.stop()
    finally:
        docker("network", "rm", net, check=False)


@pytest.mark.docker
async def test_use_internal_hostname_reaches_the_server_by_name(unique: str) -> None:
    net = f"rustdocker-test-{unique}"
    docker("network", "create", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", net)
    try:
        s = make_spawner(unique, network_name=net, use_internal_hostname=True, remove=True)
        host, port = await s.start()
        assert (host, port) == (s.object_name, 8888)
        # From another container on the network, as a hub in a container would connect.
        reply = docker(
            "run", "--rm", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", "--network", net,
            TINY_IMAGE, "busybox", "wget", "-qO-", f"http://{host}:{port}/",
        )  # fmt: skip
        assert reply.stdout.strip() == "ok"
        await s.stop()
    finally:
        docker("network", "rm", net, check=False)


@pytest.mark.docker
async def test_get_url_reinspects_after_the_port_changed(unique: str) -> None:
    from jupyterhub import orm

    s = make_spawner(unique)
    s.orm_spawner.server = orm.Server(
        proto="http", ip="", port=0, base_url=f"/user/{unique}/", cookie_name="c"
    )
    ip, port = await s.start()
    assert await s.get_url() == f"http://{ip}:{port}/user/{unique}/"
    # The engine restarts the container (e.g. after a daemon restart): a new random host port.
    docker("restart", "-t", "0", s.object_name)
    new_port = int(
        inspect("container", s.object_name)["NetworkSettings"]["Ports"]["8888/tcp"][0]["HostPort"]
    )
    assert await s.get_url() == f"http://{ip}:{new_port}/user/{unique}/"
    await s.stop()
    docker("rm", "-f", s.object_name)


@pytest.mark.docker
async def test_host_network_without_a_subclass(unique: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = make_spawner(
        unique,
        extra_host_config={"network_mode": "host"},
        cmd=["sh", "-c", f"trap 'exit 0' TERM; httpd -f -p 127.0.0.1:{port} -h /www & wait"],
        port=port,
        remove=True,
    )
    ip, got_port = await s.start()
    info = inspect("container", s.object_name)
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert not info["HostConfig"].get("PortBindings")
    assert (ip, got_port) == ("127.0.0.1", port)
    assert http_get(ip, got_port).strip() == "ok"
    await s.stop()


@pytest.mark.docker
async def test_all_interfaces_is_normalised_to_a_reachable_address(unique: str) -> None:
    s = make_spawner(unique, host_ip="0.0.0.0", remove=True)
    ip, port = await s.start()
    binding = inspect("container", s.object_name)["NetworkSettings"]["Ports"]["8888/tcp"]
    assert binding[0]["HostIp"] == "0.0.0.0"
    assert ip == "127.0.0.1"
    assert http_get(ip, port).strip() == "ok"
    await s.stop()


@pytest.mark.docker
async def test_get_ip_and_port_override_decides_the_address(unique: str) -> None:
    class Custom(rustdocker.DockerSpawner):
        async def get_ip_and_port(self) -> tuple[str, int]:
            ip, port = await super().get_ip_and_port()
            return ("custom-" + ip, port)

    s = make_spawner(unique, cls=Custom, remove=True)
    ip, port = await s.start()
    binding = inspect("container", s.object_name)["NetworkSettings"]["Ports"]["8888/tcp"][0]
    assert (ip, port) == ("custom-127.0.0.1", int(binding["HostPort"]))
    await s.stop()


@pytest.mark.docker
async def test_get_url_and_poll_never_raise_when_the_engine_is_gone(
    unique: str, logs: Any, tmp_path: Any
) -> None:
    """At start-up JupyterHub calls get_url() for every server it believes running, outside any
    `try`: with the engine unreachable the stored URL is used, with a warning naming the server
    and the cause; poll() keeps reporting the server running, so it stays tracked."""
    from jupyterhub import orm
    from proxy import CountingProxy

    async with CountingProxy(tmp_path / "engine.sock") as engine:
        s = make_spawner(unique, docker_host=engine.url)
        s.orm_spawner.server = orm.Server(
            proto="http", ip="127.0.0.1", port=4242, base_url=f"/user/{unique}/", cookie_name="c"
        )
        await s.start()
        stored = "http://127.0.0.1:4242/user/" + unique + "/"
    # The engine's socket is gone now (the proxy closed it): a stopped engine, as the hub sees it.
    assert await s.get_url() == stored
    assert await s.poll() is None
    assert await s.poll() is None
    warnings = warnings_of(logs)
    assert any("using its stored URL" in w and unique in w for w in warnings), warnings
    assert sum("cannot poll it" in w for w in warnings) == 1, warnings  # once per outage
    docker("rm", "-f", s.object_name)


@pytest.mark.docker
async def test_get_url_falls_back_when_the_container_left_its_network(
    unique: str, logs: Any
) -> None:
    from jupyterhub import orm

    net = f"rustdocker-test-{unique}"
    docker("network", "create", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", net)
    try:
        s = make_spawner(unique, network_name=net)
        # What the hub's database holds from before.
        s.orm_spawner.server = orm.Server(
            proto="http", ip="10.1.2.3", port=4242, base_url=f"/user/{unique}/", cookie_name="c"
        )
        await s.start()
        docker("network", "disconnect", net, s.object_name)
        assert await s.get_url() == f"http://10.1.2.3:4242/user/{unique}/"
        assert any("using its stored URL" in w for w in warnings_of(logs))
        await s.stop()
    finally:
        docker("rm", "-f", f"jupyter-{unique}", check=False)
        docker("network", "rm", net, check=False)
