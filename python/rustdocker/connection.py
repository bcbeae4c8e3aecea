"""Which Docker engine a spawner talks to, and the one shared client per engine.

The settings (`docker_host`, `tls_config`, `client_kwargs`, `docker_timeout`) and the
environment (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`) are resolved here, in
DockerSpawner's order, into `(host, timeout, tls files)`; the core connects and negotiates the
API version. Every spawner of the hub process with the same engine shares one client, hence one
connection pool and one events-driven state cache.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from traitlets import Dict, Float, TraitError, Unicode, validate

from . import _core
from .traits import SpawnerPart

#: (host, timeout, (ca, cert, key) or None): what identifies one shared client.
Connection = tuple[str, float, tuple[str, str, str] | None]


class _ClientPool:
    """One connected, version-negotiated Docker client per (host, timeout, TLS) per hub process.

    A client is not tied to an event loop, so it is cached as an object. The first spawner to
    ask connects; every other spawner asking meanwhile (JupyterHub polls all its servers at
    once when it starts) awaits that same connection, so the process has one client, one
    connection pool and one events stream per engine. A failed connection is not kept: the
    next request tries again.
    """

    def __init__(self) -> None:
        self._clients: dict[Connection, _core.DockerClient] = {}
        self._connecting: dict[Connection, asyncio.Future[_core.DockerClient]] = {}

    async def get(self, connection: Connection, log: logging.Logger) -> _core.DockerClient:
        client = self._clients.get(connection)
        if client is not None:
            return client
        pending = self._connecting.get(connection)
        if pending is None:
            pending = asyncio.ensure_future(self._connect(connection, log))
            self._connecting[connection] = pending
        # Shielded: one waiter's cancellation (a cancelled spawn) must not cancel the
        # connection the others are waiting for.
        return await asyncio.shield(pending)

    async def _connect(self, connection: Connection, log: logging.Logger) -> _core.DockerClient:
        host, timeout, tls = connection
        ca, cert, keyfile = tls or (None, None, None)
        # The core's own log lines (clean-ups, the events cache) go to the hub's log.
        _core.set_logger(log)
        try:
            client = await _core.DockerClient.connect(
                host, timeout, tls_ca=ca, tls_cert=cert, tls_key=keyfile
            )
        finally:
            self._connecting.pop(connection, None)
        self._clients[connection] = client
        return client


_clients = _ClientPool()


def tls_files(value: Any, setting: str) -> tuple[str, str, str]:
    """(ca, cert, key) from docker-py TLSConfig keywords or a TLSConfig-like object."""
    if isinstance(value, dict):
        client_cert = value.get("client_cert")
        ca = value.get("ca_cert") or value.get("verify")
    else:
        client_cert = getattr(value, "cert", None)
        ca = getattr(value, "ca_cert", None) or getattr(value, "verify", None)
    if not (isinstance(client_cert, list | tuple) and len(client_cert) == 2):
        raise ValueError(
            f"DockerSpawner.{setting}: client_cert={client_cert!r} is not allowed: "
            "use client_cert=(cert_path, key_path); the engine's --tlsverify needs a client "
            "certificate"
        )
    if not isinstance(ca, str) or not ca:
        raise ValueError(
            f"DockerSpawner.{setting}: ca_cert={ca!r} is not allowed: use ca_cert=path to the CA "
            "that signed the engine's certificate"
        )
    for path in (ca, *client_cert):
        if not os.path.isfile(str(path)):
            raise ValueError(f"DockerSpawner.{setting}: certificate file {path!r} does not exist")
    return (ca, str(client_cert[0]), str(client_cert[1]))


class EngineConnection(SpawnerPart):
    """The settings that choose the Docker engine, and `docker_client()`."""

    docker_host = Unicode(
        "",
        help="""Docker engine to use, e.g. `unix:///var/run/docker.sock` or `tcp://10.0.0.5:2375`.

        Empty (the default) uses `DOCKER_HOST`, then the local socket.

        Example: `c.DockerSpawner.docker_host = "unix:///run/user/1000/docker.sock"`
        """,
    ).tag(config=True)

    tls_config = Dict(
        help="""TLS settings for a remote engine (`dockerd --tlsverify`), as docker-py's
        `TLSConfig` keywords: `client_cert=(cert_path, key_path)` and `ca_cert=path` (or
        `verify=path`). The engine's certificate is verified against that CA and the client
        certificate is presented, so all three files are needed. `DOCKER_TLS_VERIFY` with
        `DOCKER_CERT_PATH` (`ca.pem`, `cert.pem`, `key.pem`) overrides this, and `client_kwargs`
        override both.

        Example::

            c.DockerSpawner.tls_config = {
                "client_cert": ("/etc/docker-client/cert.pem", "/etc/docker-client/key.pem"),
                "ca_cert": "/etc/docker-client/ca.pem",
            }
        """,
    ).tag(config=True)

    client_kwargs = Dict(
        help="""Connection settings, applied last: `base_url` (the Docker host), `tls` (a dict of
        `TLSConfig` keywords, a docker-py `TLSConfig` object, or False) and `timeout` (seconds).
        Other docker-py `APIClient` keywords (`version`, `user_agent`, ...) are accepted and
        ignored: the API version is always negotiated with the engine.

        Example: `c.DockerSpawner.client_kwargs = {"base_url": "tcp://10.0.0.5:2376"}`
        """,
    ).tag(config=True)

    docker_timeout = Float(
        120.0,
        help="""Seconds one Docker API request may take before it fails (pulls stream, so a long
        pull is not cut short while data flows). From 1 second to one day; anything else (a
        fraction of a second, which the engine client cannot honour, NaN, infinity) is refused
        when the configuration is loaded.

        Example: `c.DockerSpawner.docker_timeout = 300`
        """,
    ).tag(config=True)

    @validate("docker_timeout")
    def _validate_docker_timeout(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 1.0 <= value <= _core.MAX_DOCKER_TIMEOUT:
            raise TraitError(
                f"{type(self).__name__}.docker_timeout = {value!r} is not allowed: use a number "
                f"of seconds from 1 to {_core.MAX_DOCKER_TIMEOUT:g}"
            )
        return value

    def _connection(self) -> Connection:
        """(host, timeout, (ca, cert, key) or None) from the settings and the environment, in
        DockerSpawner's order: tls_config, then DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, then
        client_kwargs. The host falls back to `DOCKER_HOST` in the core (`_core.docker_host`)."""
        host: str | None = self.docker_host or None
        timeout = self.docker_timeout
        tls = tls_files(self.tls_config, "tls_config") if self.tls_config else None
        if os.environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0"):
            cert_path = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
            ca, cert, key = (os.path.join(cert_path, f) for f in ("ca.pem", "cert.pem", "key.pem"))
            tls = (ca, cert, key)
        kwargs = self.client_kwargs
        if kwargs.get("base_url"):
            host = str(kwargs["base_url"])
        if "tls" in kwargs:
            tls = tls_files(kwargs["tls"], "client_kwargs['tls']") if kwargs["tls"] else None
        if kwargs.get("timeout"):
            timeout = float(kwargs["timeout"])
        resolved, _ = _core.docker_host(host)
        return resolved, timeout, tls

    async def docker_client(self) -> _core.DockerClient:
        """The hub process's shared client for this spawner's engine."""
        return await _clients.get(self._connection(), self.log)
