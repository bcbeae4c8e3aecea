"""Private registries: `registry_credentials` checked without showing a secret, Docker
`config.json` files read, and against the engine a registry with TLS and htpasswd
authentication (Debian's docker-registry; a CA made here, trusted through the engine's
certs.d): the right credentials pull, wrong or missing ones fail naming the registry, and no
password reaches an error or the log."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from registry import docker_cli, free_port, port_free
from test_swarm import swarm  # noqa: F401 (the single-node swarm fixture)
from traitlets import TraitError

import rustdocker

from conftest import TINY_IMAGE, make_spawner, skip_or_fail, wait_for

PASSWORD = f"pw-{uuid.uuid4().hex}"


def test_credentials_checked_without_showing_them() -> None:
    s = make_spawner(registry_credentials={"reg.example.org": {"username": "u", "password": "p1"}})
    assert s.resolved_registry_credentials() == {
        "reg.example.org": {"username": "u", "password": "p1"}
    }
    for bad in (
        {"reg": {"username": "u"}},
        {"reg": {"username": "u", "password": "s3cret-x", "extra": "y"}},
        {"reg": {"password": "s3cret-x"}},
        {"reg": "s3cret-x"},
        {"": {"identitytoken": "s3cret-x"}},
    ):
        with pytest.raises(TraitError, match=r"DockerSpawner\.registry_credentials") as info:
            make_spawner(registry_credentials=bad)
        assert "s3cret-x" not in str(info.value)
    # Docker Hub's names are one registry; a scheme or path is not part of the name.
    s = make_spawner(registry_credentials={"https://index.docker.io/v1/": {"identitytoken": "tok"}})
    assert s.resolved_registry_credentials() == {"docker.io": {"identitytoken": "tok"}}


def test_docker_config_json(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    auth = base64.b64encode(b"robot:pa:ss").decode()
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "reg.example.org": {"auth": auth},
                    "https://index.docker.io/v1/": {"identitytoken": "tok"},
                },
                "credHelpers": {"helped.example.org": "ecr-login"},
            }
        )
    )
    s = make_spawner(registry_credentials=str(config))
    with pytest.raises(TraitError, match=r"registry helped\.example\.org in a credential helper"):
        s.resolved_registry_credentials()
    s = make_spawner(registry_credentials={"reg.example.org": {"config": str(config)}})
    assert s.resolved_registry_credentials() == {
        "reg.example.org": {"username": "robot", "password": "pa:ss"}
    }
    s = make_spawner(registry_credentials={"other.example.org": {"config": str(config)}})
    with pytest.raises(TraitError, match=r"has no credentials for registry other\.example\.org"):
        s.resolved_registry_credentials()
    s = make_spawner(registry_credentials={"r": {"config": str(tmp_path / "missing.json")}})
    with pytest.raises(TraitError, match="cannot read"):
        s.resolved_registry_credentials()


# ------------------------------------------------------------------ against the engine


class AuthRegistry:
    """docker-registry on 127.0.0.1 with TLS (a CA of the test's own, trusted by the engine
    through /etc/docker/certs.d/<host>/ca.crt) and htpasswd authentication."""

    def __init__(self, workdir: Path) -> None:
        import bcrypt

        self.workdir = workdir
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.certs_d = Path("/etc/docker/certs.d") / self.host
        d = workdir
        openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        subprocess.run(
            [*openssl, "-keyout", d / "ca.key", "-out", d / "ca.pem", "-subj", "/CN=test-ca"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                d / "key.pem",
                "-out",
                d / "req.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        subprocess.run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                d / "req.csr",
                "-CA",
                d / "ca.pem",
                "-CAkey",
                d / "ca.key",
                "-CAcreateserial",
                "-out",
                d / "cert.pem",
                "-days",
                "2",
                "-extfile",
                d / "ext.cnf",
            ],
            check=True,
            capture_output=True,
        )
        # The registry's bcrypt is Go's, which reads the 2a variant.
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(prefix=b"2a")).decode()
        (d / "htpasswd").write_text(f"robot:{hashed}\n")
        (d / "config.yml").write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {d / 'storage'}\n"
            f"http:\n  addr: {self.host}\n  secret: {uuid.uuid4().hex}\n"
            f"  tls:\n    certificate: {d / 'cert.pem'}\n    key: {d / 'key.pem'}\n"
            f"auth:\n  htpasswd:\n    realm: rustdocker-test\n    path: {d / 'htpasswd'}\n"
        )
        self.certs_d.mkdir(parents=True, exist_ok=True)
        shutil.copy(d / "ca.pem", self.certs_d / "ca.crt")
        self.log = (d / "registry.log").open("wb")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(d / "config.yml")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.client_config = d / "client"

    def login_and_push(self, repo: str) -> str:
        """TINY_IMAGE pushed as `<host>/<repo>:1` with `docker login` into a client config of
        the test's own (`client_config/config.json`); then removed from the engine."""
        image = f"{self.host}/{repo}:1"
        cfg = ["--config", str(self.client_config)]
        subprocess.run(
            ["docker", *cfg, "login", self.host, "-u", "robot", "--password-stdin"],
            input=PASSWORD,
            text=True,
            check=True,
            capture_output=True,
        )
        docker_cli("tag", TINY_IMAGE, image)
        subprocess.run(["docker", *cfg, "push", image], check=True, capture_output=True)
        docker_cli("rmi", image)
        return image

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.certs_d, ignore_errors=True)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    if shutil.which("docker-registry") is None or shutil.which("openssl") is None:
        skip_or_fail("Debian's docker-registry and openssl are needed")
    r = AuthRegistry(tmp_path_factory.mktemp("auth-registry"))
    try:
        deadline_ok = False
        for _ in range(300):
            if not port_free(r.port):
                deadline_ok = True
                break
            subprocess.run(["sleep", "0.1"], check=False)
        assert deadline_ok, "the registry did not start"
        yield r
    finally:
        r.close()


def all_logged(logs: Any) -> str:
    return "\n".join(r.getMessage() for r in logs.records)


@pytest.mark.docker
async def test_private_registry_pulls_with_the_right_credentials(
    auth_registry: AuthRegistry, unique: str, logs: Any
) -> None:
    image = auth_registry.login_and_push(f"rustdocker-test/private-{uuid.uuid4().hex[:8]}")
    host = auth_registry.host
    try:
        # Missing, then wrong credentials: a clear error naming the registry, nothing left.
        for creds in ({}, {host: {"username": "robot", "password": "wrong-password-123"}}):
            s = make_spawner(unique, image=image, registry_credentials=creds, remove=True)
            with pytest.raises(Exception) as info:
                await s.start()
            message = str(info.value)
            assert f"pull image '{image}'" in message and host in message, message
            assert "wrong-password-123" not in message
            assert docker_cli("ps", "-aq", "--filter", f"name=^/{s.object_name}$").strip() == ""
        # The right ones, given directly and through the config.json `docker login` wrote.
        for creds in (
            {host: {"username": "robot", "password": PASSWORD}},
            {host: {"config": str(auth_registry.client_config / "config.json")}},
        ):
            s = make_spawner(unique, image=image, registry_credentials=creds, remove=True)
            await s.start()
            info = json.loads(docker_cli("inspect", s.object_name))[0]
            assert info["Config"]["Image"] == image and info["State"]["Running"]
            await s.stop()
            name = s.object_name
            await wait_for(
                lambda name=name: docker_cli("ps", "-aq", "--filter", f"name=^/{name}$") == "",
                30,
                "the container removed",
            )
            docker_cli("rmi", image)
        assert PASSWORD not in all_logged(logs)
        assert "wrong-password-123" not in all_logged(logs)
    finally:
        docker_cli("rmi", "-f", image, check=False)


@pytest.mark.docker
@pytest.mark.usefixtures("swarm")
async def test_swarm_service_pulls_with_the_credentials(
    auth_registry: AuthRegistry, unique: str
) -> None:
    # SwarmSpawner: the node that runs the task pulls the image itself, so the credentials go
    # with the service (as `docker service create --with-registry-auth`); without them the
    # task is rejected ("No such image").
    image = auth_registry.login_and_push(f"rustdocker-test/swarm-{uuid.uuid4().hex[:8]}")
    host = auth_registry.host
    s = make_spawner(
        unique,
        cls=rustdocker.SwarmSpawner,
        image=image,
        registry_credentials={host: {"username": "robot", "password": PASSWORD}},
        use_internal_ip=False,
    )
    try:
        await s.start()
        info = json.loads(docker_cli("service", "inspect", s.object_name))[0]
        assert info["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].startswith(image)
        assert await s.poll() is None
        assert PASSWORD not in json.dumps(info)  # the engine keeps no copy in the service
        await s.stop()
    finally:
        docker_cli("service", "rm", s.object_name, check=False)
        docker_cli("rmi", "-f", image, check=False)
