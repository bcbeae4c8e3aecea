"""A counting proxy for the Docker socket, one for the benchmark and the tests.

Every connection to the listening socket is forwarded byte for byte to the engine's socket; on
the way the client's requests are parsed just enough to find where each one ends (headers, then
a Content-Length or chunked body), so each HTTP request is counted once, also on keep-alive
connections, and a request body that happens to contain a request line is not counted.

- The benchmark runs it as a process of its own, so its forwarding does not load the event loop
  being measured: `python proxy.py LISTEN_SOCK [UPSTREAM_SOCK]` prints `ready` once it listens.
  `GET /_bench/count` on a fresh connection is answered by the proxy itself:
  `{"total": N, "by_kind": {"GET /containers/{id}/json": n, ...}}`.
- The tests run `CountingProxy` in their own event loop (`async with CountingProxy(path)`) and
  read `requests` in order of arrival; `drop_connections()` cuts every connection, as an engine
  restart would.

Standard library only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import sys
from pathlib import Path

DOCKER_SOCKET = "/var/run/docker.sock"
_VERSION = re.compile(r"^/v\d+\.\d+")


def kind(method: str, target: str) -> str:
    """`GET /v1.41/containers/abc/json?x=1` -> `GET /containers/{id}/json`."""
    path = _VERSION.sub("", target.split("?", 1)[0])
    parts = path.split("/")
    collection = parts[1] if len(parts) > 2 else ""
    if collection in {"containers", "images", "volumes", "networks"} and parts[2] not in {
        "json",
        "create",
        "prune",
    }:
        parts[2] = "{id}"
        # An image reference may contain slashes: /images/{name}/json
        if collection == "images" and parts[-1] == "json":
            parts = [*parts[:3], "json"]
    return f"{method} {'/'.join(parts)}"


def _fields(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target = lines[0].split(" ")[:2]
    fields = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
    return method, target, fields


async def _copy(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    half_close: bool = False,
    frozen: set[asyncio.StreamWriter] | None = None,
) -> None:
    """Copies until `reader` ends, then closes `writer`; with `half_close`, only its sending
    side, so the answers still come back (a hijacked stream whose client sends nothing more).
    Once `writer` is in `frozen`, what arrives is dropped: a half-open connection."""
    try:
        while data := await reader.read(1 << 16):
            if frozen is not None and writer in frozen:
                continue
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        pass
    finally:
        if half_close and writer.can_write_eof() and not writer.is_closing():
            with contextlib.suppress(OSError):
                writer.write_eof()
        else:
            writer.close()


class CountingProxy:
    """Listens on the unix socket `path` and forwards to `upstream`, counting requests."""

    def __init__(self, path: Path | str, upstream: str = DOCKER_SOCKET) -> None:
        self.path = Path(path)
        self.upstream = upstream
        # "METHOD target" of every request, in order of arrival (target as sent, with the API
        # version and query), and the same counted by `kind`.
        self.requests: list[str] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._frozen: set[asyncio.StreamWriter] = set()
        self._first: dict[asyncio.StreamWriter, str] = {}

    @property
    def url(self) -> str:
        """The proxy as a Docker host (`docker_host`, `DOCKER_HOST`)."""
        return f"unix://{self.path}"

    def count(self, pattern: str = "") -> int:
        """How many requests so far had `pattern` in their "METHOD target"."""
        return sum(1 for r in self.requests if pattern in r)

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(
            self._handle, str(self.path), limit=1 << 20, backlog=4096
        )
        os.chmod(self.path, 0o660)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop_connections()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def __aenter__(self) -> CountingProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def drop_connections(self) -> None:
        """Closes every proxied connection, as an engine restart would."""
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        self._writers.clear()

    async def freeze_connections(self, pattern: str = "") -> None:
        """Every connection open now whose first request has `pattern` in its "METHOD target"
        stays open but brings its client nothing more from the engine, as a half-open TCP
        connection to a remote engine would; new ones work."""
        self._frozen.update(w for w, first in self._first.items() if pattern in first)

    def _answer_count(self, writer: asyncio.StreamWriter) -> None:
        body = json.dumps({"total": sum(self.counts.values()), "by_kind": dict(self.counts)})
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body.encode()
        )

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            first = await creader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            cwriter.close()
            return
        if first.split(b" ", 2)[1].startswith(b"/_bench/count"):
            self._answer_count(cwriter)
            await cwriter.drain()
            cwriter.close()
            return
        ureader, uwriter = await asyncio.open_unix_connection(self.upstream, limit=1 << 20)
        self._writers.update({cwriter, uwriter})
        self._first[cwriter] = " ".join(first.decode("latin-1").split(" ", 2)[:2])
        back = asyncio.ensure_future(_copy(ureader, cwriter, frozen=self._frozen))
        try:
            await self._forward_requests(first, creader, uwriter)
            # The engine's side ends too: at once once the client has gone (the connection to
            # the engine is closed), or when the engine ends a hijacked stream.
            await back
        finally:
            uwriter.close()
            self._writers.discard(cwriter)
            self._writers.discard(uwriter)
            self._frozen.discard(cwriter)
            self._first.pop(cwriter, None)

    async def _forward_requests(
        self, first: bytes, creader: asyncio.StreamReader, uwriter: asyncio.StreamWriter
    ) -> None:
        head: bytes | None = first
        try:
            while True:
                if head is None:
                    head = await creader.readuntil(b"\r\n\r\n")
                method, target, fields = _fields(head)
                self.requests.append(f"{method} {target}")
                self.counts[kind(method, target)] += 1
                uwriter.write(head)
                if "chunked" in fields.get("transfer-encoding", ""):
                    while True:
                        size_line = await creader.readuntil(b"\r\n")
                        uwriter.write(size_line)
                        size = int(size_line.split(b";")[0].strip(), 16)
                        if size == 0:
                            uwriter.write(await creader.readuntil(b"\r\n"))
                            break
                        uwriter.write(await creader.readexactly(size + 2))
                elif int(fields.get("content-length", "0")) > 0:
                    uwriter.write(await creader.readexactly(int(fields["content-length"])))
                await uwriter.drain()
                if "upgrade" in fields.get("connection", "").lower():
                    # A hijacked connection (exec, attach): raw bytes from here on, until the
                    # engine ends the stream.
                    await _copy(creader, uwriter, half_close=True)
                    return
                head = None
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        uwriter.close()


async def main(listen: str, upstream: str) -> None:
    proxy = CountingProxy(listen, upstream)
    await proxy.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    # Long-lived connections (an events stream) end with the proxy.
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await proxy.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else DOCKER_SOCKET))
