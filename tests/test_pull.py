"""Image pulls from a real registry (Debian's docker-registry on a loopback port of its own)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import rustdocker

from conftest import TINY_IMAGE, docker, exists, inspect, make_spawner

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("tiny_image")]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and docker-registry is not installed")
        pytest.skip("docker-registry (Debian package) is not installed")
    d = tmp_path_factory.mktemp("registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "config.yml").write_text(
        "version: 0.1\n"
        "log: {level: info}\n"
        f"storage: {{filesystem: {{rootdirectory: {d / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    log = open(d / "registry.log", "w")  # noqa: SIM115 - open for the registry's lifetime
    proc = subprocess.Popen([binary, "serve", str(d / "config.yml")], stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            # Our registry, not whatever else might hold the port: it names its API version.
            url = f"http://127.0.0.1:{port}/v2/"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.headers.get("Docker-Distribution-Api-Version") and proc.poll() is None:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"docker-registry did not start: {(d / 'registry.log').read_text()}")
            time.sleep(0.1)
        _ROOTS[f"127.0.0.1:{port}"] = d / "data"
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        print(
            f"registry exit code {proc.returncode}; log: {(d / 'registry.log').read_text()[-3000:]}"
        )


_ROOTS: dict[str, Path] = {}


def registry_root(registry: str) -> Path:
    return _ROOTS[registry]


def push(registry: str, name: str) -> str:
    """Pushes the tiny image as `<registry>/<name>` and removes the local copy."""
    ref = f"{registry}/{name}"
    docker("tag", TINY_IMAGE, ref)
    docker("push", ref)
    docker("rmi", ref)
    assert not exists("image", ref)
    return ref


async def test_ifnotpresent_pulls_a_missing_image(registry: str, unique: str) -> None:
    ref = push(registry, f"rustdocker-test/{unique}:v1")  # a registry port and a tag
    s = make_spawner(unique, image=ref, remove=True)
    try:
        await s.start()
        assert exists("image", ref)
        assert inspect("container", s.object_name)["Config"]["Image"] == ref
        await s.stop()
        # Present now: the next start does not pull (the registry is not even asked).
        docker("tag", TINY_IMAGE, ref)
        await s.start()
        await s.stop()
    finally:
        docker("rmi", ref, check=False)


async def test_always_pulls_and_digests_work(registry: str, unique: str) -> None:
    ref = push(registry, f"rustdocker-test/{unique}")  # no tag: latest
    digest = ""
    s = make_spawner(unique, image=ref, pull_policy="Always", remove=True)
    try:
        await s.start()
        digest = inspect("image", ref)["RepoDigests"][0]
        await s.stop()
        docker("rmi", ref, digest, check=False)
        by_digest = make_spawner(unique, image=digest, pull_policy="ifnotpresent", remove=True)
        await by_digest.start()
        assert inspect("container", by_digest.object_name)["Config"]["Image"] == digest
        await by_digest.stop()
    finally:
        docker("rmi", ref, check=False)
        if digest:
            docker("rmi", digest, check=False)


async def test_never_and_skip_do_not_pull(registry: str, unique: str) -> None:
    ref = push(registry, f"rustdocker-test/{unique}:v2")
    for policy in ("never", "skip"):
        s = make_spawner(unique, image=ref, pull_policy=policy)
        with pytest.raises(rustdocker.NotFoundError) as info:
            await s.start()
        assert ref in str(info.value) and f"'{policy}'" in str(info.value)
        assert not exists("image", ref)
        assert not exists("container", s.object_name)


async def test_pull_error_fails_the_spawn_with_the_registry_message(
    registry: str, unique: str
) -> None:
    s = make_spawner(unique, image=f"{registry}/rustdocker-test/nothing-here:v9")
    with pytest.raises(rustdocker.RustDockerError) as info:
        await s.start()
    message = str(info.value)
    assert "nothing-here" in message
    assert "manifest unknown" in message or "not found" in message
    assert not exists("container", s.object_name)


async def test_error_inside_the_pull_stream_fails_the_spawn(registry: str, unique: str) -> None:
    """The registry serves the manifest, then loses a layer: the engine reports that inside the
    200 pull stream, which DockerSpawner swallows; rustdocker fails the start with it."""
    # An image with a layer of its own, which the engine then has to fetch.
    ref = f"{registry}/rustdocker-test/{unique}:broken"
    ctx = registry_root(registry).parent / unique
    ctx.mkdir()
    (ctx / "payload").write_bytes(os.urandom(3 * 1024 * 1024))
    (ctx / "Dockerfile").write_text(f"FROM {TINY_IMAGE}\nCOPY payload /payload\n")
    docker("build", "-q", "-t", ref, str(ctx))
    docker("push", ref)
    docker("rmi", ref)
    root = registry_root(registry)
    blobs = sorted(root.rglob("blobs/sha256/*/*/data"), key=lambda p: p.stat().st_size)
    blobs[-1].unlink()  # the largest blob: that 3 MiB layer
    s = make_spawner(unique, image=ref)
    with pytest.raises(rustdocker.RustDockerError) as info:
        await s.start()
    message = str(info.value)
    assert f"pull image '{ref}'" in message
    assert not exists("container", s.object_name)
    assert not exists("image", ref)
