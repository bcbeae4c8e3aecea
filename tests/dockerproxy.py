"""A counting proxy in front of the Docker socket, so tests can assert how many Engine API
requests an operation made, and cut the connections to exercise reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|POST|PUT|DELETE|HEAD) (/[^ ]*) HTTP/1\.[01]\r\n")


class CountingProxy:
    def __init__(self, path: Path, upstream: str = "/var/run/docker.sock") -> None:
        self.path = path
        self.upstream = upstream
        self.requests: list[str] = []
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    async def __aenter__(self) -> CountingProxy:
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop_connections()

    async def drop_connections(self) -> None:
        """Closes every proxied connection, as an engine restart would."""
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        self._writers.clear()

    def count(self, pattern: str = "") -> int:
        return sum(1 for r in self.requests if pattern in r)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
        self._writers.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            tail = b""
            try:
                while chunk := await src.read(65536):
                    if count:
                        data = tail + chunk
                        for m in REQUEST_LINE.finditer(data):
                            if m.start() >= len(tail) or m.end() > len(tail):
                                self.requests.append(f"{m.group(1).decode()} {m.group(2).decode()}")
                        tail = data[-256:]
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(
            pipe(reader, up_writer, True), pipe(up_reader, writer, False), return_exceptions=True
        )
        self._writers.discard(writer)
        self._writers.discard(up_writer)
