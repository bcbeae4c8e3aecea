"""Pulls are bounded: a registry that stops sending fails the start with an error naming the
image and the registry, and a cancelled start (JupyterHub's `start_timeout`, or the user) ends a
pull within about two seconds with no container left.

The registry is a few lines of Python on 127.0.0.1 (the engine trusts loopback registries over
plain HTTP): it serves a real manifest and config, then stalls on the layer blob.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import docker, exists, make_spawner, wait_for

pytestmark = pytest.mark.docker


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _image() -> tuple[bytes, bytes, bytes]:
    """(manifest, config, layer) of a one-file image."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"stalled\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue())
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [_digest(raw.getvalue())]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": _digest(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": _digest(layer),
                }
            ],
        }
    ).encode()
    return manifest, config, layer


class StallingRegistry:
    """Serves one image whose layer blob never finishes: its headers and first bytes are sent,
    then nothing until the registry is closed."""

    def __init__(self) -> None:
        manifest, config, layer = _image()
        self.stalled = threading.Event()
        self.closing = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, body: bytes, content_type: str, head: bool = False) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Content-Digest", _digest(body))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _route(self, head: bool) -> None:
                path = self.path
                if path == "/v2/":
                    self._send(b"{}", "application/json", head)
                elif "/manifests/" in path:
                    self._send(manifest, json.loads(manifest)["mediaType"], head)
                elif path.endswith(_digest(config)):
                    self._send(config, "application/octet-stream", head)
                elif path.endswith(_digest(layer)):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(layer)))
                    self.end_headers()
                    if head:
                        return
                    self.wfile.write(layer[:8])
                    self.wfile.flush()
                    outer.stalled.set()
                    outer.closing.wait(120)
                else:
                    self.send_response(404)
                    self.end_headers()

            def do_GET(self) -> None:
                self._route(head=False)

            def do_HEAD(self) -> None:
                self._route(head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stalling_registry() -> Iterator[StallingRegistry]:
    registry = StallingRegistry()
    yield registry
    registry.close()


def image_on(registry: StallingRegistry) -> str:
    return f"{registry.host}/rustdocker-test/stall-{uuid.uuid4().hex[:8]}:1"


async def test_a_stalled_pull_fails_naming_image_and_registry(
    unique: str, stalling_registry: StallingRegistry
) -> None:
    image = image_on(stalling_registry)
    s = make_spawner(unique, image=image, pull_stall_timeout=2)
    started = time.monotonic()
    with pytest.raises(Exception, match="stalled") as info:
        await s.start()
    message = str(info.value)
    assert image in message and stalling_registry.host in message, message
    assert stalling_registry.stalled.is_set()
    assert time.monotonic() - started < 30
    assert not exists("container", s.object_name)
    docker("rmi", "-f", image, check=False)


async def test_a_cancelled_pull_ends_the_start_within_two_seconds(
    unique: str, stalling_registry: StallingRegistry
) -> None:
    image = image_on(stalling_registry)
    s = make_spawner(unique, image=image, pull_stall_timeout=600)
    task = asyncio.ensure_future(s.start())
    await wait_for(lambda: stalling_registry.stalled.is_set() or task.done(), 60, "a stall")
    assert not task.done(), task
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 2.5
    client = await s.docker_client()
    await client.wait_idle(s.object_name)
    assert not exists("container", s.object_name)
    # start_timeout, as JupyterHub applies it, on the same stalled pull.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(make_spawner(unique, image=image).start(), timeout=1)
    await client.wait_idle(s.object_name)
    assert not exists("container", s.object_name)
    docker("rmi", "-f", image, check=False)
