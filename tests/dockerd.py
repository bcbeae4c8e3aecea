"""A Docker engine of a test's own: a second dockerd, which a test may restart, stop, freeze
(SIGSTOP) and thaw without touching the shared engine on /var/run/docker.sock.

It has its own data root, exec root (and so its own managed containerd), unix socket (and, with
`tls_dir`, a TCP port with mutual TLS), and its own default bridge: `--bridge=none` would make
it delete docker0, the shared engine's bridge, at start-up, so a bridge is made for it here. It
never touches iptables (`--iptables=false`), which belong to the shared engine.

Address ranges for its bridge and its networks are reserved across concurrent test sessions
(several worktrees test on one machine) with a file per /24 under a lock.

Used by tests/test_connection.py (TLS) and tests/faults/.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

RESERVATIONS = Path("/tmp/rustdocker-test-subnets")
# Ranges the shared engine's default address pools do not use (172.17-31, 192.168).
SUBNET_RANGE = [f"10.215.{n}" for n in range(1, 255)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reserve_subnet() -> str:
    """A /24 (`"10.215.N"`) that no interface or route here uses and no live test session has
    reserved; reserved for this process until `release_subnet`."""
    RESERVATIONS.mkdir(exist_ok=True)
    with open(RESERVATIONS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        routes = subprocess.run(
            ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True
        ).stdout
        for prefix in SUBNET_RANGE:
            if f"{prefix}." in routes:
                continue
            mark = RESERVATIONS / prefix
            with contextlib.suppress(OSError, ValueError):
                if _alive(int(mark.read_text())):
                    continue
            mark.write_text(str(os.getpid()))
            return prefix
    raise RuntimeError(f"no free /24 left in {SUBNET_RANGE[0]}.0-{SUBNET_RANGE[-1]}.0")


def release_subnet(prefix: str) -> None:
    with contextlib.suppress(OSError):
        (RESERVATIONS / prefix).unlink()


class Dockerd:
    """One dockerd of the test's own. `start()`, `stop()`, `restart()`, `freeze()`, `thaw()`;
    `docker(...)` runs the CLI against it; `close()` removes everything it made."""

    def __init__(
        self, workdir: Path, tls_dir: Path | None = None, live_restore: bool = False
    ) -> None:
        self.tag = f"{os.getpid() % 100000}-{uuid.uuid4().hex[:6]}"
        self.workdir = workdir
        self.root = Path(f"/var/lib/rustdocker-test-{self.tag}")
        self.run = Path(f"/run/rustdocker-test-{self.tag}")
        self.socket = self.run / "docker.sock"
        self.log_path = workdir / f"dockerd-{self.tag}.log"
        self.tls_dir = tls_dir
        self.live_restore = live_restore
        self.tcp_host: str | None = None
        if tls_dir is not None:
            from socket import socket

            with socket() as s:
                s.bind(("127.0.0.1", 0))
                self.tcp_host = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        self.bridge = f"rdt{self.tag.replace('-', '')[:11]}"
        self.subnets: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._frozen = False

    # ---------------------------------------------------------------- addresses

    @property
    def host(self) -> str:
        """The engine as a Docker host: its TCP address with TLS, else its unix socket."""
        return self.tcp_host or f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        """The environment for the docker CLI (and DOCKER_HOST for a hub) to reach it."""
        env = {**os.environ, "DOCKER_HOST": self.host}
        if self.tls_dir is not None:
            env.update(DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(self.tls_dir / "certs"))
        else:
            env.pop("DOCKER_TLS_VERIFY", None)
        return env

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, check=check,
            timeout=timeout, **kwargs,
        )  # fmt: skip

    def answers(self) -> bool:
        try:
            return self.docker("version", check=False, timeout=5).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    # ---------------------------------------------------------------- process

    def _args(self) -> list[str]:
        args = [
            "dockerd", f"--host=unix://{self.socket}", f"--data-root={self.root}",
            f"--exec-root={self.run}", f"--pidfile={self.run}.pid", f"--bridge={self.bridge}",
            "--iptables=false", "--ip-masq=false",
        ]  # fmt: skip
        if self.live_restore:
            args.append("--live-restore")
        if self.tls_dir is not None:
            d = self.tls_dir
            args += [
                "--tlsverify", f"--tlscacert={d / 'ca.pem'}", f"--tlscert={d / 'server.pem'}",
                f"--tlskey={d / 'server-key.pem'}", f"--host={self.tcp_host}",
            ]  # fmt: skip
        return args

    def start(self, timeout: float = 60) -> None:
        """Starts it (the first time, with its bridge) and waits until it answers."""
        if not self.subnets:
            self._make_bridge()
        with self.log_path.open("ab") as log:
            log.write(f"\n===== starting dockerd at {time.strftime('%X')} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start:\n{self.log_tail()}")
            time.sleep(0.2)

    def _make_bridge(self) -> None:
        """Its default bridge, on a /24 of its own (the first start only)."""
        prefix = reserve_subnet()
        self.subnets.append(prefix)
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{prefix}.1/24", "dev", self.bridge], check=True)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, as a service manager stops it: without `live_restore` it stops its
        containers first."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        self.thaw(proc)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: its sockets stay open and accept connections, and nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        proc = proc or self.proc
        if self._frozen and proc is not None:
            proc.send_signal(signal.SIGCONT)
        self._frozen = False

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ---------------------------------------------------------------- contents

    def load_image(self, image: str) -> None:
        """Copies `image` over from the shared engine (`docker save | docker load`)."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        self.docker("load", "-q", stdin=save.stdout)
        save.wait()

    def create_network(self, name: str) -> str:
        """A bridge network on a /24 of its own; returns the /24's prefix (`"10.215.N"`)."""
        prefix = reserve_subnet()
        self.subnets.append(prefix)
        self.docker("network", "create", "--subnet", f"{prefix}.0/24", name)
        return prefix

    def inspect(self, *names: str) -> list[dict[str, Any]]:
        if not names:
            return []
        return json.loads(self.docker("inspect", *names).stdout)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Removes its containers and networks, stops it, deletes its files and bridge."""
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            with contextlib.suppress(subprocess.SubprocessError):
                ids = self.docker("ps", "-aq", check=False).stdout.split()
                if ids:
                    self.docker("rm", "-f", "-v", *ids, check=False)
                nets = self.docker("network", "ls", "-q", "--filter", "type=custom", check=False)
                for net in nets.stdout.split():
                    self.docker("network", "rm", net, check=False)
        self.stop()
        release_leftovers(self.root, self.run)
        subprocess.run(["rm", "-rf", str(self.root), str(self.run)], check=False)
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)
        for prefix in self.subnets:
            release_subnet(prefix)
        self.subnets = []


def release_leftovers(root: Path, run: Path) -> None:
    """What a stopped dockerd may leave: shims of containers that died while it shut down
    (their containerd went first; they are idle, their containers gone), and its mounts."""
    shims = subprocess.run(
        ["pgrep", "-f", f"containerd-shim.* -address {run}/"], capture_output=True, text=True
    ).stdout.split()
    for pid in shims:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for mount in sorted(mounts, key=len, reverse=True):
        if mount.startswith((f"{root}", f"{run}")):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def missing() -> str | None:
    """What this machine lacks to run a second dockerd, or None."""
    for tool in ("dockerd", "docker", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is needed for an engine of the test's own"
    if os.geteuid() != 0:
        return "an engine of the test's own needs root"
    return None
