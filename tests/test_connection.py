"""The connection to the engine: the shared, version-negotiated client, the Docker host from
the settings or the environment, and a remote engine over mutual TLS (a second dockerd on
127.0.0.1 with `--tlsverify` and certificates made here: the right client certificate works;
a missing or wrong one is refused with an error that says so)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from traitlets import TraitError

import rustdocker
from rustdocker import _core

from conftest import docker, make_spawner, skip_or_fail


def test_incomplete_tls_settings_are_named(tmp_path: Path) -> None:
    s = make_spawner(tls_config={"ca_cert": str(tmp_path / "missing.pem")})
    with pytest.raises(ValueError, match="client_cert"):
        s._connection()
    (tmp_path / "ca.pem").write_text("x")
    s = make_spawner(
        tls_config={
            "client_cert": ("/nope/c.pem", "/nope/k.pem"),
            "ca_cert": str(tmp_path / "ca.pem"),
        }
    )
    with pytest.raises(ValueError, match=r"/nope/c\.pem"):
        s._connection()


async def test_unreachable_engine_names_the_host(unique: str) -> None:
    s = make_spawner(unique, docker_host="unix:///nonexistent/docker.sock")
    with pytest.raises(rustdocker.DockerConnectionError, match=r"/nonexistent/docker\.sock"):
        await s.start()
    with pytest.raises(rustdocker.DockerConnectionError, match=r"127\.0\.0\.1:1"):
        await _core.DockerClient.connect("tcp://127.0.0.1:1", 5.0)


# ------------------------------------------------------------------ on the engine


@pytest.mark.docker
async def test_client_negotiates_api_version() -> None:
    client = await _core.DockerClient.connect()
    server_api = docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip()
    assert client.api_version == server_api


# ------------------------------------------------------------------ a remote engine over TLS


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", cwd=d)  # fmt: skip


def make_cert(d: Path, ca: str, name: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", cwd=d)  # fmt: skip
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
            "-out", f"{name}.pem", cwd=d)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tls_engine(
    tiny_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    if shutil.which("dockerd") is None or shutil.which("openssl") is None:
        skip_or_fail("dockerd and openssl are needed")
    d = tmp_path_factory.mktemp("tls")
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
              "extendedKeyUsage=serverAuth\n")  # fmt: skip
    make_cert(d, "ca", "client", "extendedKeyUsage=clientAuth\n")
    make_cert(d, "rogue-ca", "rogue", "extendedKeyUsage=clientAuth\n")
    port = free_port()
    host = f"tcp://127.0.0.1:{port}"
    root = Path(f"/var/lib/rustdocker-test-tls-{port}")
    run = Path(f"/run/rustdocker-test-tls-{port}")
    # A default bridge of its own: `--bridge=none` would make this dockerd delete docker0, the
    # main engine's bridge, at start-up.
    bridge = f"rdtls{port % 10000}"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", "10.213.78.1/24", "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    log = open(d / "dockerd.log", "w")  # noqa: SIM115 - open for the daemon's lifetime
    daemon = subprocess.Popen(
        ["dockerd", "--tlsverify", f"--tlscacert={d / 'ca.pem'}",
         f"--tlscert={d / 'server.pem'}", f"--tlskey={d / 'server-key.pem'}",
         f"--host={host}", f"--data-root={root}", f"--exec-root={run}",
         f"--pidfile={run}.pid", f"--bridge={bridge}", "--iptables=false", "--ip-masq=false"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    tls_env = {
        **os.environ,
        "DOCKER_HOST": host,
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(d / "certs"),
    }
    (d / "certs").mkdir()
    for src, dst in (
        ("ca.pem", "ca.pem"),
        ("client.pem", "cert.pem"),
        ("client-key.pem", "key.pem"),
    ):
        shutil.copy(d / src, d / "certs" / dst)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "info"], env=tls_env, capture_output=True).returncode:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"TLS dockerd did not start: {(d / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.3)
        # The tiny image, copied over from the main engine.
        save = subprocess.Popen(["docker", "save", tiny_image], stdout=subprocess.PIPE)
        subprocess.run(["docker", "load", "-q"], stdin=save.stdout, env=tls_env, check=True,
                       capture_output=True)  # fmt: skip
        save.wait()
        # A network of its own on an address range nothing else here uses.
        subprocess.run(["docker", "network", "create", "--subnet", "10.213.77.0/24", "rdtls"],
                       env=tls_env, check=True, capture_output=True)  # fmt: skip
        yield host, d
    finally:
        subprocess.run(["docker", "rm", "-f", *subprocess.run(
            ["docker", "ps", "-aq"], env=tls_env, capture_output=True, text=True).stdout.split()],
            env=tls_env, capture_output=True)  # fmt: skip
        subprocess.run(["docker", "network", "rm", "rdtls"], env=tls_env, capture_output=True)
        daemon.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(20)
        if daemon.poll() is None:
            daemon.kill()
        log.close()
        subprocess.run(["rm", "-rf", str(root), str(run)], check=False)
        subprocess.run(["ip", "link", "del", bridge], check=False)


@pytest.mark.docker
async def test_right_client_certificate_spawns(tls_engine: tuple[str, Path], unique: str) -> None:
    host, d = tls_engine
    s = make_spawner(
        unique,
        client_kwargs={"base_url": host},
        tls_config={
            "client_cert": (str(d / "client.pem"), str(d / "client-key.pem")),
            "ca_cert": str(d / "ca.pem"),
        },
        network_name="rdtls",
        remove=True,
    )
    client = await s.docker_client()
    assert client.host == host
    assert client.api_version
    # A whole lifecycle over TLS; the engine on the other side shows it.
    ip, _port = await s.start()
    assert ip.startswith("10.213.77.")
    tls_docker = ["docker", "--tlsverify", f"--tlscacert={d / 'ca.pem'}",
                  f"--tlscert={d / 'client.pem'}", f"--tlskey={d / 'client-key.pem'}",
                  f"--host={host}"]  # fmt: skip
    out = subprocess.run([*tls_docker, "inspect", s.object_name], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f'"org.rustdocker.user": "{unique}"' in out.stdout
    assert await s.poll() is None
    await s.stop()
    out = subprocess.run([*tls_docker, "ps", "-aq"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.docker
async def test_docker_tls_verify_environment(
    tls_engine: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
    host, d = tls_engine
    monkeypatch.setenv("DOCKER_HOST", host)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(d / "certs"))
    s = make_spawner(unique)
    client = await s.docker_client()
    assert client.host == host
    assert await s.poll() == 0  # an API call over TLS: no such container there


@pytest.mark.docker
async def test_missing_client_certificate_is_refused(tls_engine: tuple[str, Path]) -> None:
    host, _ = tls_engine
    with pytest.raises(rustdocker.DockerConnectionError) as info:
        await _core.DockerClient.connect(host, 10.0)
    assert host.removeprefix("tcp://") in str(info.value)


@pytest.mark.docker
async def test_wrong_client_certificate_is_refused(tls_engine: tuple[str, Path]) -> None:
    host, d = tls_engine
    with pytest.raises(rustdocker.DockerConnectionError) as info:
        await _core.DockerClient.connect(
            host, 10.0, tls_ca=str(d / "ca.pem"), tls_cert=str(d / "rogue.pem"),
            tls_key=str(d / "rogue-key.pem"),
        )  # fmt: skip
    message = str(info.value)
    assert host in message
    # A server certificate from a CA we do not trust is refused too.
    with pytest.raises(rustdocker.DockerConnectionError):
        await _core.DockerClient.connect(
            host, 10.0, tls_ca=str(d / "rogue-ca.pem"), tls_cert=str(d / "client.pem"),
            tls_key=str(d / "client-key.pem"),
        )  # fmt: skip


@pytest.mark.parametrize("value", [0.5, 0, -1, 1e20, float("nan"), float("inf"), 86401])
def test_docker_timeout_out_of_range_is_a_trait_error(value: float) -> None:
    """Below a second the engine client cannot honour it; huge values used to panic."""
    with pytest.raises(TraitError, match=r"docker_timeout = .* from 1 to 86400"):
        make_spawner(docker_timeout=value)


@pytest.mark.parametrize("value", [0.5, 1e20, float("nan")])
def test_pull_stall_timeout_out_of_range_is_a_trait_error(value: float) -> None:
    with pytest.raises(TraitError, match=r"pull_stall_timeout = .* from 1 to 86400"):
        make_spawner(pull_stall_timeout=value)


async def test_the_core_refuses_a_timeout_it_cannot_honour() -> None:
    """`client_kwargs['timeout']` bypasses the trait; the core refuses it with a ValueError, never
    a panic."""
    with pytest.raises(ValueError, match="docker_timeout"):
        await _core.DockerClient.connect(None, 1e20)
