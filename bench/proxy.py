"""A counting proxy for the Docker socket: `python proxy.py LISTEN_SOCK [UPSTREAM_SOCK]`.

Every connection to LISTEN_SOCK is forwarded byte for byte to the engine's socket; on the way the
client's requests are parsed just enough to find where each one ends (headers, then a
Content-Length or chunked body), so each HTTP request is counted once, also on keep-alive
connections. `GET /_bench/count` on a fresh connection is answered by the proxy itself:
`{"total": N, "by_kind": {"GET /containers/{id}/json": n, ...}}`.

Standard library only; it runs as a process of its own so its forwarding does not load the event
loop being measured.
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

COUNTS: collections.Counter[str] = collections.Counter()
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


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _forward_requests(
    first: bytes, creader: asyncio.StreamReader, uwriter: asyncio.StreamWriter
) -> None:
    head: bytes | None = first
    try:
        while True:
            if head is None:
                head = await creader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ")[:2]
            COUNTS[kind(method, target)] += 1
            fields = {}
            for line in lines[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
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
            head = None
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        uwriter.close()


async def handle(
    upstream: str, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter
) -> None:
    try:
        first = await creader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        cwriter.close()
        return
    if first.split(b" ", 2)[1].startswith(b"/_bench/count"):
        body = json.dumps({"total": sum(COUNTS.values()), "by_kind": dict(COUNTS)}).encode()
        cwriter.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await cwriter.drain()
        cwriter.close()
        return
    ureader, uwriter = await asyncio.open_unix_connection(upstream, limit=1 << 20)
    back = asyncio.create_task(_copy(ureader, cwriter))
    await _forward_requests(first, creader, uwriter)
    # The client is gone: whatever the engine still sends has no one to go to.
    await back


async def main(listen: str, upstream: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(listen)
    server = await asyncio.start_unix_server(
        lambda r, w: handle(upstream, r, w), listen, limit=1 << 20, backlog=4096
    )
    os.chmod(listen, 0o660)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()
        # Long-lived connections (an events stream) end with the proxy.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(listen)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "/var/run/docker.sock"))
