"""Debian's docker-registry (the distribution registry) on loopback, and images pushed to it:
shared by tests/ (pull, progress and shared-pull tests) and bench/ (the pull benchmark).

The engine trusts registries on 127.0.0.0/8 over plain HTTP, so no TLS is needed. Standard
library only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path


def docker_cli(*args: str, check: bool = True, timeout: float = 600) -> str:
    r = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Registry:
    """One docker-registry process on 127.0.0.1, its storage in `workdir`."""

    def __init__(
        self, workdir: Path, log_path: Path | None = None, port: int | None = None
    ) -> None:
        self.workdir = workdir
        self.log_path = log_path or workdir / "registry.log"
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is missing: apt-get install docker-registry")
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: {uuid.uuid4().hex}\n"
        )
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while port_free(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the registry did not start; see {self.log_path}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def push(self, source: str, repo: str, tag: str = "latest") -> str:
        """`source` (an image on the engine) pushed as `<registry>/<repo>:<tag>`; the local
        tag is removed again, so the engine has to pull it. Returns the reference."""
        image = f"{self.host}/{repo}:{tag}"
        docker_cli("tag", source, image)
        docker_cli("push", image)
        docker_cli("rmi", image)
        return image

    def push_big(self, repo: str, base: str, mib: int, layers: int, labels: dict[str, str]) -> str:
        """An image of `mib` MiB of random data in `layers` layers on top of `base`, built,
        pushed and removed from the engine (only the registry has it). Returns its reference."""
        image = f"{self.host}/{repo}:latest"
        ctx = self.workdir / f"build-{uuid.uuid4().hex[:8]}"
        ctx.mkdir()
        try:
            lines = [f"FROM {base}"]
            for k in range(layers):
                with (ctx / f"layer{k}").open("wb") as f:
                    for _ in range(mib // layers):
                        f.write(os.urandom(1 << 20))
                lines.append(f"COPY layer{k} /data/layer{k}")
            lines += [f"LABEL {key}={value}" for key, value in labels.items()]
            (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
            subprocess.run(
                ["docker", "build", "-q", "-t", image, str(ctx)],
                check=True,
                capture_output=True,
                env={**os.environ, "DOCKER_BUILDKIT": "0"},
            )
        finally:
            shutil.rmtree(ctx, ignore_errors=True)
        docker_cli("push", image)
        docker_cli("rmi", image)
        return image


class Throttle:
    """A TCP relay on 127.0.0.1 in front of a registry that sends at most `rate` bytes per
    second to its clients, so a pull of a few hundred MB lasts long enough to watch. Pull
    `<throttle.host>/<repo>:<tag>`: the registry serves the same content on any address."""

    def __init__(self, upstream_port: int, rate: float) -> None:
        import asyncio
        import threading

        self.rate = rate
        self.upstream_port = upstream_port
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the throttle did not start")

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self._loop)

        async def pipe(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: bool
        ) -> None:
            try:
                while data := await reader.read(64 * 1024):
                    writer.write(data)
                    await writer.drain()
                    if slow:
                        await asyncio.sleep(len(data) / self.rate)
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            try:
                up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                client_w.close()
                return
            await asyncio.gather(pipe(client_r, up_w, False), pipe(up_r, client_w, True))

        async def serve() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            self._ready.set()
            async with server:
                await server.serve_forever()

        with contextlib.suppress(RuntimeError):  # stopped by close()
            self._loop.run_until_complete(serve())

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
