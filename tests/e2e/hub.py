"""A real JupyterHub in a subprocess, configured from examples/, and what the engine shows.

The test hub loads `examples/named_servers_config.py` (which loads `examples/jupyterhub_config.py`),
so the examples are what is tested, and then changes only what a test run needs: loopback ports
of its own, its own `hub_id` label, `remove = True`, an API token with admin scopes, and
`cleanup_servers = False` so a hub restart leaves the servers running.

Also here: the prerequisites check (skip, or fail under CI=true) and where a failed test keeps its
evidence (tests/artifacts/<test id>/).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "tests" / "artifacts"
IMAGE = os.environ.get("SINGLEUSER_IMAGE", "rustdocker/singleuser:latest")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NOTEBOOK_DIR = "/home/jovyan/work"
MEM_LIMIT = 2 * 1024**3  # c.Spawner.mem_limit = "2G" in examples/jupyterhub_config.py
LABEL_HUB = "org.rustdocker.hub"
LABEL_USER = "org.rustdocker.user"
LABEL_SERVER = "org.rustdocker.server"
# The service the tests call the REST API as, and the scopes its token has.
SERVICE = "e2e"
SERVICE_SCOPES = ["admin:users", "admin:servers", "access:servers"]

T = TypeVar("T")


# --------------------------------------------------------------------------- polling


def wait_until(
    check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25
) -> T:
    """Poll `check` until it returns something truthy (returned), for at most `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (requests.RequestException, OSError) as e:
            last_error = e
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


# --------------------------------------------------------------------------- the engine


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=120
    )


def containers(hub_id: str, user: str | None = None, server: str | None = None) -> list[dict]:
    """`docker inspect` of every container (running or not) with this hub's label, optionally
    only one user's, or one server's (`""` is the default server)."""
    filters = ["--filter", f"label={LABEL_HUB}={hub_id}"]
    if user is not None:
        filters += ["--filter", f"label={LABEL_USER}={user}"]
    ids = docker("ps", "-aq", *filters).stdout.split()
    if not ids:
        return []
    found = json.loads(docker("inspect", *ids).stdout)
    if server is not None:
        found = [c for c in found if c["Config"]["Labels"].get(LABEL_SERVER) == server]
    return found


def volume(name: str) -> dict | None:
    r = docker("volume", "inspect", name, check=False)
    return json.loads(r.stdout)[0] if r.returncode == 0 else None


def container_file(container: str, path: str) -> str:
    return docker("exec", container, "cat", path).stdout


def remove_labelled(hub_id: str) -> None:
    """Remove every container and volume this test hub created (they carry its label)."""
    flt = f"label={LABEL_HUB}={hub_id}"
    ids = docker("ps", "-aq", "--filter", flt, check=False).stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    vols = docker("volume", "ls", "-q", "--filter", flt, check=False).stdout.split()
    if vols:
        docker("volume", "rm", "-f", *vols, check=False)


def interface_ipv4(name: str) -> str:
    """The IPv4 address of a network interface, as examples/jupyterhub_config.py reads it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
    return socket.inet_ntoa(packed[20:24])


def bridge_ip() -> str:
    return os.environ.get("DOCKER_BRIDGE_IP") or interface_ipv4("docker0")


def free_port(ip: str) -> int:
    """A port free on `ip`, below the kernel's ephemeral range (32768-60999 by default), which
    is where Docker picks the host ports it publishes and where outgoing connections get theirs:
    a port from there could be taken between this choice and the hub's (re)start."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind((ip, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port found on {ip}")


# --------------------------------------------------------------------------- prerequisites


def jupyterhub_command() -> str | None:
    beside = Path(sys.executable).parent / "jupyterhub"
    return str(beside) if beside.exists() else shutil.which("jupyterhub")


def missing_prerequisites(browser: bool = False) -> list[str]:
    """What the e2e tests need and this machine lacks (scripts/setup-e2e.sh installs it all)."""
    missing = []
    if shutil.which("docker") is None:
        missing.append("the docker CLI")
    elif docker("info", "--format", "{{.ServerVersion}}", check=False).returncode != 0:
        missing.append("a running Docker engine (scripts/start-docker.sh)")
    elif docker("image", "inspect", IMAGE, check=False).returncode != 0:
        missing.append(f"the image {IMAGE} (images/build-singleuser.sh)")
    else:
        try:
            bridge_ip()
        except OSError as e:
            missing.append(f"the docker0 bridge address ({e})")
    if jupyterhub_command() is None:
        missing.append("the jupyterhub command")
    if shutil.which("configurable-http-proxy") is None:
        missing.append("configurable-http-proxy (npm install -g configurable-http-proxy)")
    if browser:
        if not os.access(CHROMIUM, os.X_OK):
            missing.append(f"{CHROMIUM} (apt-get install chromium)")
        try:
            import playwright  # noqa: F401
        except ImportError:
            missing.append("the playwright Python package (pip install playwright)")
    return missing


def require(problems: list[str]) -> None:
    """Skip for missing prerequisites; under CI=true, fail instead."""
    if not problems:
        return
    message = "missing for the end-to-end tests: " + "; ".join(problems)
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {message}")
    pytest.skip(f"{message} (scripts/setup-e2e.sh installs them)")


# --------------------------------------------------------------------------- failures


def failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test failed so far (conftest's report hook records the phases)."""
    return any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


def artifact_dir(request: pytest.FixtureRequest) -> Path:
    """tests/artifacts/<test id>/, where a failed test keeps its evidence."""
    path = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- the hub

TEST_CONFIG = """\
# Written by tests/e2e/hub.py: the named-servers example plus what a test run needs.
c = get_config()  # noqa
load_subconfig({base!r})  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.DockerSpawner.hub_id = {hub_id!r}
c.DockerSpawner.remove = True
# A restart of the hub leaves the servers running (the proxy is restarted with the hub).
c.JupyterHub.cleanup_servers = False
c.JupyterHub.services = [{{"name": {service!r}, "api_token": {token!r}}}]
c.JupyterHub.load_roles = [
    {{"name": "e2e-admin", "scopes": {scopes!r}, "services": [{service!r}]}}
]
c.JupyterHub.log_level = "DEBUG"
"""


class Hub:
    """One JupyterHub process (it starts the proxy itself) on loopback ports of its own."""

    def __init__(
        self, workdir: Path, hub_id: str, token: str, password: str, extra_config: str = ""
    ) -> None:
        self.workdir = workdir
        self.hub_id = hub_id
        self.token = token
        self.password = password
        self.bridge_ip = bridge_ip()
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "jupyterhub_config.py"
        self.config.write_text(
            TEST_CONFIG.format(
                base=str(EXAMPLES / "named_servers_config.py"),
                port=self.port,
                hub_port=free_port(self.bridge_ip),
                api_port=free_port("127.0.0.1"),
                hub_id=hub_id,
                service=SERVICE,
                token=token,
                scopes=SERVICE_SCOPES,
            )
            + extra_config
        )
        self.log_path = workdir / "jupyterhub.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()

    # ---------------------------------------------------------------- process

    def start(self, timeout: float = 90) -> None:
        env = dict(os.environ)
        for var in ("DOCKER_NOTEBOOK_DIR", "JUPYTERHUB_BIND_URL", "RUSTDOCKER_HUB_ADMIN"):
            env.pop(var, None)
        env.update(
            RUSTDOCKER_IMAGE=IMAGE,
            RUSTDOCKER_HUB_PASSWORD=self.password,
            DOCKER_BRIDGE_IP=self.bridge_ip,
        )
        cmd = jupyterhub_command()
        assert cmd is not None
        with self.log_path.open("ab") as log:
            log.write(f"\n===== starting the hub at {time.strftime('%X')} =====\n".encode())
            log.flush()
            # A session of its own: a Ctrl-C on pytest's terminal reaches it only through the
            # fixture's teardown, which stops it in order.
            self.proc = subprocess.Popen(
                [cmd, "-f", str(self.config)],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"the hub exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            return self.session.get(f"{self.url}/hub/api/", timeout=5).status_code == 200

        wait_until(up, timeout, "the hub to answer through the proxy")

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, as a service manager would (SIGKILL after `timeout` s); then the proxy, if
        the hub left it running."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._stop_leftover_proxy()

    def _stop_leftover_proxy(self) -> None:
        """The proxy runs in a session of its own (JupyterHub starts it so), which a hub that
        died or was killed leaves behind: find it through the hub's pid file."""
        pid_file = self.workdir / "jupyterhub-proxy.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            cwd = Path(f"/proc/{pid}/cwd").resolve()
        except (OSError, ValueError):
            return  # no pid file, or no such process: nothing left
        if b"configurable-http-proxy" not in cmdline or cwd != self.workdir.resolve():
            return  # the pid was reused by something else
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---------------------------------------------------------------- REST API

    def api(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = {"Authorization": f"token {token or self.token}"}
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, f"{self.url}/hub/api{path}", headers=headers, **kwargs)

    def create_user(self, name: str) -> None:
        r = self.api("POST", f"/users/{name}")
        assert r.status_code == 201, r.text

    def servers(self, user: str) -> dict[str, Any]:
        r = self.api("GET", f"/users/{user}")
        r.raise_for_status()
        return r.json().get("servers", {})  # type: ignore[no-any-return]

    def server_url(self, user: str, server: str = "") -> str:
        return f"{self.url}/user/{user}/" + (f"{server}/" if server else "")

    def request_start(self, user: str, server: str = "") -> None:
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        r = self.api("POST", path)
        assert r.status_code in (201, 202), f"start {user}/{server}: {r.status_code} {r.text}"

    def wait_ready(self, user: str, server: str = "", timeout: float = 120) -> None:
        """The hub reports the server ready and the proxy routes to it."""

        def ready() -> bool:
            model = self.servers(user).get(server)
            if model is None:
                raise AssertionError(f"{user}/{server} is no longer starting:\n{self.log_tail()}")
            return bool(model["ready"])

        wait_until(ready, timeout, f"server {user}/{server} to be ready")
        wait_until(
            lambda: (
                self.session.get(
                    self.server_url(user, server) + "api/status",
                    headers={"Authorization": f"token {self.token}"},
                    timeout=10,
                ).status_code
                == 200
            ),
            30,
            f"{user}/{server} to answer through the proxy",
        )

    def start_server(self, user: str, server: str = "") -> None:
        self.request_start(user, server)
        self.wait_ready(user, server)

    def stop_server(
        self, user: str, server: str = "", token: str | None = None, timeout: float = 60
    ) -> None:
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        r = self.api("DELETE", path, token=token)
        assert r.status_code in (202, 204), f"stop {user}/{server}: {r.status_code} {r.text}"
        wait_until(lambda: server not in self.servers(user), timeout, f"{user}/{server} to stop")

    # ---------------------------------------------------------------- the user's server

    def put_file(self, user: str, server: str, path: str, text: str) -> None:
        r = self.session.put(
            self.server_url(user, server) + f"api/contents/{path}",
            headers={"Authorization": f"token {self.token}"},
            json={"type": "file", "format": "text", "content": text},
            timeout=30,
        )
        assert r.status_code in (200, 201), f"PUT {path}: {r.status_code} {r.text}"

    def get_file(self, user: str, server: str, path: str) -> requests.Response:
        return self.session.get(
            self.server_url(user, server) + f"api/contents/{path}",
            headers={"Authorization": f"token {self.token}"},
            params={"type": "file", "format": "text"},
            timeout=30,
        )


@contextlib.contextmanager
def hub_of_its_own(
    tmp_path_factory: pytest.TempPathFactory, name: str, extra_config: str, hub_id: str = ""
) -> Iterator[Hub]:
    """A hub with a configuration of its own (`extra_config` after the examples'), for a test
    module's fixture: started, then stopped with everything carrying its label removed."""
    require(missing_prerequisites())
    import secrets
    import uuid

    hub_id = hub_id or f"rustdocker-e2e-{name}-{uuid.uuid4().hex[:8]}"
    h = Hub(
        tmp_path_factory.mktemp(f"e2e-{name}"),
        hub_id,
        token=secrets.token_hex(16),
        password=secrets.token_urlsafe(12),
        extra_config=extra_config,
    )
    try:
        h.start()
        yield h
    finally:
        h.stop()
        remove_labelled(hub_id)
