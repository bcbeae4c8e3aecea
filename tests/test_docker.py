"""The spawner against a real Docker engine: every claim is checked with `docker inspect`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import rustdocker
from rustdocker import _core

from conftest import (
    LABEL_HUB,
    SESSION_HUB_ID,
    TINY_IMAGE,
    docker,
    exists,
    inspect,
    make_spawner,
)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("tiny_image")]


def container_exec(name: str, script: str) -> str:
    return docker("exec", name, "sh", "-c", script).stdout


def http_get(ip: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=5) as r:
        return r.read().decode()


async def test_start_poll_stop_lifecycle(unique: str) -> None:
    s = make_spawner(unique)
    assert await s.poll() == 0  # nothing known yet
    ip, port = await s.start()
    name = s.object_name
    info = inspect("container", name)
    assert info["State"]["Running"] is True
    assert info["Id"] == s.object_id
    assert await s.poll() is None
    # The returned address reaches the server.
    assert http_get(ip, port).strip() == "ok"
    binding = info["NetworkSettings"]["Ports"]["8888/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1"
    assert int(binding["HostPort"]) == port
    # Environment and labels as the engine shows them.
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["JUPYTERHUB_USER"] == unique
    assert env["JUPYTER_IMAGE_SPEC"] == s.image
    assert env["JUPYTERHUB_API_TOKEN"] == s.api_token
    labels = info["Config"]["Labels"]
    assert labels["org.rustdocker.user"] == unique
    assert labels["org.rustdocker.server"] == ""
    assert labels[LABEL_HUB] == SESSION_HUB_ID
    assert labels["org.rustdocker.managed-by"] == "rustdocker"
    # No limits sent when unset.
    assert info["HostConfig"]["Memory"] == 0
    assert info["HostConfig"]["CpuQuota"] == 0
    assert info["HostConfig"]["MemoryReservation"] == 0

    old_token = s.api_token
    await s.stop()
    info = inspect("container", name)
    assert info["State"]["Running"] is False  # remove=False keeps it
    assert await s.poll() == 0
    assert s.get_state() == {"object_id": info["Id"], "object_name": name}

    # Start again: the kept container is re-used, with its token.
    s.api_token = "new-token-ignored"
    await s.start()
    assert inspect("container", name)["Id"] == info["Id"]
    assert s.api_token == old_token
    docker("kill", name)
    await asyncio.sleep(0.2)
    assert await s.poll() == 137
    await s.stop()


async def test_remove_true_removes_container_and_leftover(unique: str) -> None:
    s = make_spawner(unique, remove=True)
    await s.start()
    name = s.object_name
    first_id = s.object_id
    await s.stop()
    assert not exists("container", name)
    assert s.get_state() == {}
    # A leftover container with the same name is replaced at start.
    docker("create", "--name", name, "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", s.image)
    await s.start()
    assert inspect("container", name)["Id"] not in (first_id, "")
    assert inspect("container", name)["State"]["Running"] is True
    await s.stop()
    assert not exists("container", name)


async def test_persistence_round_trip_named_volume(unique: str) -> None:
    notebook_dir = "/home/jovyan/work"
    settings: dict[str, Any] = {
        "notebook_dir": notebook_dir,
        "volumes": {"jupyterhub-user-{username}": notebook_dir},
        "remove": True,
    }
    s = make_spawner(unique, **settings)
    await s.start()
    volume = f"jupyterhub-user-{unique}"
    vinfo = inspect("volume", volume)
    assert vinfo["Labels"]["org.rustdocker.user"] == unique
    assert vinfo["Labels"][LABEL_HUB] == SESSION_HUB_ID
    cinfo = inspect("container", s.object_name)
    assert f"{volume}:{notebook_dir}:rw" in cinfo["HostConfig"]["Binds"]
    env = dict(e.split("=", 1) for e in cinfo["Config"]["Env"])
    assert env["JUPYTERHUB_ROOT_DIR"] == notebook_dir
    container_exec(s.object_name, f"echo precious > {notebook_dir}/data.txt")
    await s.stop()
    assert not exists("container", s.object_name)
    assert exists("volume", volume)  # never deleted

    # As after a hub restart: a fresh spawner object, same config.
    s2 = make_spawner(unique, **settings)
    await s2.start()
    assert container_exec(s2.object_name, f"cat {notebook_dir}/data.txt").strip() == "precious"
    await s2.stop()
    assert exists("volume", volume)


async def test_persistence_guide_config_unchanged(unique: str) -> None:
    """The persistence guide's example, exactly as written, on the real engine."""
    notebook_dir = os.environ.get("DOCKER_NOTEBOOK_DIR") or "/home/jovyan/work"
    s = make_spawner(
        unique,
        notebook_dir=notebook_dir,
        volumes={"jupyterhub-user-{username}": notebook_dir},
        mounts=[{"source": "/jupyterhub-user-{username}", "target": notebook_dir, "type": "bind"}],
        mem_limit="2G",
    )
    await s.start()
    info = inspect("container", s.object_name)
    assert info["HostConfig"]["Memory"] == 2 * 1024**3
    assert info["HostConfig"]["Binds"] == [f"jupyterhub-user-{unique}:{notebook_dir}:rw"]
    container_exec(s.object_name, f"echo kept > {notebook_dir}/f")
    await s.stop()
    await s.start()
    assert container_exec(s.object_name, f"cat {notebook_dir}/f").strip() == "kept"
    await s.stop()
    docker("rm", "-f", s.object_name)


async def test_bind_mounts_and_read_only(unique: str) -> None:
    with tempfile.TemporaryDirectory(prefix="rustdocker-test-") as host:
        hostdir = Path(host) / unique
        hostdir.mkdir()
        ro = Path(host) / "ro"
        ro.mkdir()
        (ro / "readme").write_text("shared\n")
        s = make_spawner(
            unique,
            mounts=[
                {
                    "source": f"{host}/{{raw_username}}",
                    "target": "/home/jovyan/work",
                    "type": "bind",
                    "propagation": "rprivate",
                },
                {"source": "mnt-{username}", "target": "/mnt/vol", "type": "volume"},
                {"type": "tmpfs", "target": "/scratch", "tmpfs_size": 1048576},
            ],
            read_only_volumes={str(ro): "/shared"},
            volumes={str(ro): {"bind": "/shared-rw-overridden", "mode": "rw"}},
            remove=True,
        )
        await s.start()
        info = inspect("container", s.object_name)
        assert info["HostConfig"]["Binds"] == [f"{ro}:/shared:ro"]
        mounts = {m["Target"]: m for m in info["HostConfig"]["Mounts"]}
        assert mounts["/home/jovyan/work"]["Source"] == str(hostdir)
        assert mounts["/home/jovyan/work"]["BindOptions"]["Propagation"] == "rprivate"
        assert mounts["/mnt/vol"]["Source"] == f"mnt-{unique}"
        assert mounts["/scratch"]["TmpfsOptions"]["SizeBytes"] == 1048576
        assert inspect("volume", f"mnt-{unique}")["Labels"]["org.rustdocker.user"] == unique
        container_exec(s.object_name, "echo from-container > /home/jovyan/work/out")
        assert (hostdir / "out").read_text() == "from-container\n"
        assert container_exec(s.object_name, "cat /shared/readme") == "shared\n"
        r = docker("exec", s.object_name, "sh", "-c", "echo x > /shared/nope", check=False)
        assert r.returncode != 0
        await s.stop()


async def test_resources_on_the_engine(unique: str) -> None:
    s = make_spawner(
        unique,
        mem_limit="1.5G",
        mem_guarantee="512M",
        cpu_limit=0.5,
        extra_host_config={"CpuPeriod": 50000},
        remove=True,
    )
    await s.start()
    host = inspect("container", s.object_name)["HostConfig"]
    assert host["Memory"] == 1610612736
    assert host["MemoryReservation"] == 536870912
    assert host["CpuPeriod"] == 50000
    assert host["CpuQuota"] == 25000
    await s.stop()


async def test_docker_py_keywords_on_the_engine(unique: str) -> None:
    """DockerSpawner configurations use docker-py's keyword names; the engine shows the result."""
    s = make_spawner(
        unique,
        extra_create_kwargs={
            "labels": {"team": "{username}-team"},
            "environment": {"EXTRA": "1", "JUPYTERHUB_USER": "overridden"},
            "working_dir": "/tmp",
            "user": "1000",
        },
        extra_host_config={
            "shm_size": "64m",
            "cap_drop": ["NET_RAW"],
            "pids_limit": 200,
            "ulimits": [{"name": "nofile", "soft": 1024, "hard": 2048}],
            "tmpfs": ["/scratch:size=1m"],
            "restart_policy": {"Name": "no"},
            "sysctls": {"net.ipv4.ip_unprivileged_port_start": 0},
        },
        remove=True,
    )
    await s.start()
    info = inspect("container", s.object_name)
    config, host = info["Config"], info["HostConfig"]
    assert config["Labels"]["team"] == f"{unique}-team"
    assert config["Labels"]["org.rustdocker.user"] == unique  # added to, not replaced
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["EXTRA"] == "1"
    assert env["JUPYTERHUB_USER"] == "overridden"
    assert "JUPYTERHUB_API_TOKEN" in env
    assert config["WorkingDir"] == "/tmp"
    assert config["User"] == "1000"
    assert host["ShmSize"] == 64 * 1024 * 1024
    assert host["CapDrop"] == ["NET_RAW"]
    assert host["PidsLimit"] == 200
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert host["Tmpfs"] == {"/scratch": "size=1m"}
    assert host["Sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
    assert container_exec(s.object_name, "id -u").strip() == "1000"
    await s.stop()


async def test_unknown_docker_py_keyword_creates_nothing(unique: str) -> None:
    s = make_spawner(unique, extra_host_config={"shm_sise": "1g"})
    with pytest.raises(ValueError, match="shm_sise"):
        await s.start()
    assert not exists("container", s.object_name)


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


async def test_state_round_trip_after_hub_restart(unique: str) -> None:
    s = make_spawner(unique)
    await s.start()
    state = json.loads(json.dumps(s.get_state()))  # as stored in the hub's database
    # A new spawner object, as the hub builds after a restart.
    s2 = make_spawner(unique, prefix="renamed-prefix-does-not-orphan")
    s2.load_state(state)
    assert await s2.poll() is None
    assert s2.object_name == s.object_name
    await s2.stop()
    assert await s2.poll() == 0
    # Container deleted while the hub was down: reported stopped.
    docker("rm", "-f", s.object_name)
    s3 = make_spawner(unique)
    s3.load_state(state)
    assert await s3.poll() == 0


async def test_named_servers_get_separate_containers_and_volumes(unique: str) -> None:
    settings: dict[str, Any] = {
        "volumes": {"jupyterhub-user-{username}-{servername}": "/home/jovyan/work"},
        "remove": True,
    }
    a = make_spawner(unique, "lab-a", **settings)
    b = make_spawner(unique, "lab-b", **settings)
    await asyncio.gather(a.start(), b.start())
    assert a.object_name == f"jupyter-{unique}--lab-2da"
    assert inspect("container", b.object_name)["Config"]["Labels"]["org.rustdocker.server"] == (
        "lab-b"
    )
    assert exists("volume", f"jupyterhub-user-{unique}-lab-2da")
    assert exists("volume", f"jupyterhub-user-{unique}-lab-2db")
    await asyncio.gather(a.stop(), b.stop())


async def test_cancelled_start_leaves_no_container(unique: str) -> None:
    s = make_spawner(unique)
    name = s.object_name
    # Cancel at several points of the start; each time nothing may be left behind.
    for delay in (0.0, 0.005, 0.02, 0.05, 0.1):
        task = asyncio.ensure_future(s.start())
        await asyncio.sleep(delay)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            await s.stop()
            docker("rm", "-f", name, check=False)
            continue
        assert not exists("container", name), f"container left after cancel at {delay}s"
    # start_timeout, the way JupyterHub applies it.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(s.start(), timeout=0.01)
    assert not exists("container", name)


async def test_failed_start_leaves_nothing_and_explains(unique: str) -> None:
    s = make_spawner(unique, cmd=["/no/such/binary"])
    with pytest.raises(rustdocker.DockerApiError) as info:
        await s.start()
    message = str(info.value)
    assert f"start container '{s.object_name}'" in message
    assert "/no/such/binary" in message
    # The container this start created is gone again.
    assert not exists("container", s.object_name)


async def test_bad_volume_template_creates_nothing(unique: str) -> None:
    s = make_spawner(unique, volumes={"vol-{nosuchfield}": "/w"})
    with pytest.raises(ValueError, match="nosuchfield"):
        await s.start()
    assert not exists("container", s.object_name)


async def test_unknown_engine_field_creates_nothing(unique: str) -> None:
    s = make_spawner(unique, extra_host_config={"NotAField": 1})
    with pytest.raises(ValueError, match="NotAField"):
        await s.start()
    assert not exists("container", s.object_name)


async def test_api_error_names_verb_object_and_daemon_message(unique: str) -> None:
    s = make_spawner(unique, image="rustdocker/does-not-exist:1", pull_policy="never")
    with pytest.raises(rustdocker.NotFoundError) as info:
        await s.start()
    assert "rustdocker/does-not-exist:1" in str(info.value)
    assert info.value.status_code == 404
    s = make_spawner(unique, extra_host_config={"NetworkMode": "no-such-network-xyz"})
    with pytest.raises(rustdocker.DockerApiError) as info2:
        await s.start()
    message = str(info2.value)
    assert "no-such-network-xyz" in message
    assert f"'{s.object_name}'" in message
    assert not exists("container", s.object_name)


async def test_unreachable_engine_names_the_host(unique: str) -> None:
    s = make_spawner(unique, docker_host="unix:///nonexistent/docker.sock")
    with pytest.raises(rustdocker.DockerConnectionError, match=r"/nonexistent/docker\.sock"):
        await s.start()
    with pytest.raises(rustdocker.DockerConnectionError, match=r"127\.0\.0\.1:1"):
        await _core.DockerClient.connect("tcp://127.0.0.1:1", 5.0)


async def test_args_appended_to_image_cmd(unique: str) -> None:
    s = make_spawner(unique, args=["--extra"], remove=True)
    await s.start()
    info = inspect("container", s.object_name)
    image_cmd = inspect("image", s.image)["Config"]["Cmd"]
    assert info["Config"]["Cmd"] == [*image_cmd, "--extra"]
    await s.stop()


async def test_client_negotiates_api_version() -> None:
    client = await _core.DockerClient.connect()
    server_api = docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip()
    assert client.api_version == server_api


async def test_post_start_cmd_runs_and_is_logged(
    unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    s = make_spawner(
        unique,
        post_start_cmd="sh -c 'echo made > /tmp/post; echo to-stdout; echo to-stderr >&2; exit 3'",
        remove=True,
    )
    with caplog.at_level(logging.DEBUG):
        await s.start()
    assert container_exec(s.object_name, "cat /tmp/post").strip() == "made"
    text = caplog.text
    assert f"post_start stdout in {s.object_name}" in text and "to-stdout" in text
    assert f"post_start stderr in {s.object_name}" in text and "to-stderr" in text
    assert "exited with code 3" in text
    await s.stop()


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


async def test_kept_container_of_another_server_is_not_resumed(unique: str) -> None:
    # As after the hub's autorename, which renames the server without calling rename().
    a = make_spawner(unique, "srv-a", name_template="{prefix}-{username}-fixed")
    await a.start()
    await a.stop()
    b = make_spawner(unique, "srv-b", name_template="{prefix}-{username}-fixed")
    with pytest.raises(rustdocker.ConflictError) as info:
        await b.start()
    assert "org.rustdocker.server" in str(info.value) and "srv-a" in str(info.value)
    assert inspect("container", a.object_name)["State"]["Running"] is False
    docker("rm", "-f", a.object_name)


async def test_get_command_from_the_image(unique: str) -> None:
    s = make_spawner(unique, args=["--extra"])
    image_cmd = inspect("image", s.image)["Config"]["Cmd"]
    assert await s.get_command() == [*image_cmd, "--extra"]
    assert await make_spawner(unique, cmd=["x"], args=["y"]).get_command() == ["x", "y"]


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


async def test_all_interfaces_is_normalised_to_a_reachable_address(unique: str) -> None:
    s = make_spawner(unique, host_ip="0.0.0.0", remove=True)
    ip, port = await s.start()
    binding = inspect("container", s.object_name)["NetworkSettings"]["Ports"]["8888/tcp"]
    assert binding[0]["HostIp"] == "0.0.0.0"
    assert ip == "127.0.0.1"
    assert http_get(ip, port).strip() == "ok"
    await s.stop()


async def test_internal_ssl_certs_staged_in_a_labelled_volume(unique: str, tmp_path: Path) -> None:
    """move_certs copies the hub's certificate files into the user's certs volume through a
    helper container; the server mounts that volume read-only at /certs."""
    paths = {}
    for key, name in (("keyfile", "user.key"), ("certfile", "user.crt"), ("cafile", "ca.crt")):
        (tmp_path / name).write_text(f"{key} of {unique}\n")
        paths[key] = str(tmp_path / name)
    s = make_spawner(unique, move_certs_image=TINY_IMAGE, remove=True)
    s.internal_ssl = True
    moved = await s.move_certs(paths)
    assert moved == {
        "keyfile": "/certs/user.key",
        "certfile": "/certs/user.crt",
        "cafile": "/certs/ca.crt",
    }
    volume = f"jupyterssl-{unique}"
    assert inspect("volume", volume)["Labels"]["org.rustdocker.user"] == unique
    # The helper container is gone again.
    helpers = docker("ps", "-aq", "--filter", f"name={s.object_name}-certs-").stdout.split()
    assert helpers == []
    await s.start()
    info = inspect("container", s.object_name)
    assert f"{volume}:/certs:ro" in info["HostConfig"]["Binds"]
    listing = container_exec(s.object_name, "ls -l /certs; cat /certs/user.crt")
    assert "-rw-r--r--" in listing
    assert f"certfile of {unique}" in listing
    r = docker("exec", s.object_name, "sh", "-c", "echo x > /certs/new", check=False)
    assert r.returncode != 0  # read-only
    await s.stop()
    assert exists("volume", volume)


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
