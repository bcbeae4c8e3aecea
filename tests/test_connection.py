"""The connection to the engine: the shared, version-negotiated client, the Docker host from
the settings or the environment, and a remote engine over mutual TLS (a second dockerd on
127.0.0.1 with `--tlsverify` and certificates made here: the right client certificate works;
a missing or wrong one is refused with an error that says so)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from traitlets import TraitError

import rustdocker
from rustdocker import _core

import dockerd
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


@pytest.fixture(scope="module")
def tls_engine(
    tiny_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, str]]:
    """A second dockerd (tests/dockerd.py) on 127.0.0.1 with `--tlsverify`: (host, the
    certificates' directory, the address prefix of its network `rdtls`)."""
    problem = dockerd.missing() or (shutil.which("openssl") is None and "openssl is needed")
    if problem:
        skip_or_fail(problem)
    d = tmp_path_factory.mktemp("tls")
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
              "extendedKeyUsage=serverAuth\n")  # fmt: skip
    make_cert(d, "ca", "client", "extendedKeyUsage=clientAuth\n")
    make_cert(d, "rogue-ca", "rogue", "extendedKeyUsage=clientAuth\n")
    (d / "certs").mkdir()
    for src, dst in (
        ("ca.pem", "ca.pem"),
        ("client.pem", "cert.pem"),
        ("client-key.pem", "key.pem"),
    ):
        shutil.copy(d / src, d / "certs" / dst)
    engine = dockerd.Dockerd(d, tls_dir=d)
    try:
        engine.start()
        engine.load_image(tiny_image)
        prefix = engine.create_network("rdtls")
        assert engine.tcp_host is not None
        yield engine.tcp_host, d, prefix
    finally:
        engine.close()


@pytest.mark.docker
async def test_right_client_certificate_spawns(
    tls_engine: tuple[str, Path, str], unique: str
) -> None:
    host, d, prefix = tls_engine
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
    assert ip.startswith(f"{prefix}.")
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
    tls_engine: tuple[str, Path, str], monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
    host, d, _ = tls_engine
    monkeypatch.setenv("DOCKER_HOST", host)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(d / "certs"))
    s = make_spawner(unique)
    client = await s.docker_client()
    assert client.host == host
    assert await s.poll() == 0  # an API call over TLS: no such container there


@pytest.mark.docker
async def test_missing_client_certificate_is_refused(tls_engine: tuple[str, Path, str]) -> None:
    host, _, _ = tls_engine
    with pytest.raises(rustdocker.DockerConnectionError) as info:
        await _core.DockerClient.connect(host, 10.0)
    assert host.removeprefix("tcp://") in str(info.value)


@pytest.mark.docker
async def test_wrong_client_certificate_is_refused(tls_engine: tuple[str, Path, str]) -> None:
    host, d, _ = tls_engine
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
