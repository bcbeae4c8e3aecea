"""A two-node Docker swarm of a test's own: the machine's dockerd as the manager, and a second
dockerd in a network namespace of the test's own as a worker.

    host (default netns)                       netns rdt-<tag>
    dockerd (shared) -- manager                dockerd (the test's) -- worker, hostname rdt-<tag>
    veth rdh<tag> 10.215.N.1/24  <---------->  veth rdw<tag> 10.215.N.2/24
    swarm init --advertise-addr 10.215.N.1     swarm join --advertise-addr 10.215.N.2
    docker-registry 127.0.0.1:P (optional)     docker-registry 127.0.0.1:P (same storage)

The worker has its own data root, exec root (and managed containerd), unix socket (in the host's
file system: only the network is namespaced), hostname (`unshare --uts`), default bridge
(`--bip`, a /24 of its own) and never touches iptables (`--iptables=false`; published ports go
through docker-proxy). It is started with `nsenter --net=/run/netns/NAME unshare --uts`, not
`ip netns exec`, which remounts /sys and hides the cgroups dockerd needs.

Both /24s are reserved with `dockerd.reserve_subnet` (several test sessions share a machine).
`close()` removes everything, whatever state a test left: the worker leaves the swarm and is
removed from it, the manager leaves it if the topology made it (with swarm mode's
`docker_gwbridge` and ingress leftovers), then the worker's dockerd, mounts, data root,
namespace and veth go.

The routing mesh (ingress-mode published ports) needs IPVS, which this machine's kernel lacks
(`/proc/net/ip_vs` is missing): servers are reached through host-mode published ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dockerd
from dockerd import Dockerd, release_subnet, reserve_subnet

BENCH = Path(__file__).resolve().parent.parent / "bench"


def run(*args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, **kwargs)


def host_docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    r = run("docker", *args, check=False, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def wait_until(condition: Any, seconds: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {seconds}s")
        time.sleep(interval)


class WorkerDockerd(Dockerd):
    """A dockerd in the network namespace `netns`, with its own hostname and default bridge."""

    def __init__(self, workdir: Path, netns: str, hostname: str, bip: str) -> None:
        super().__init__(workdir)
        self.netns = netns
        self.hostname = hostname
        self.bip = bip

    def _make_bridge(self) -> None:
        # Its docker0 is made by itself, inside its own namespace (`--bip`).
        pass

    def _args(self) -> list[str]:
        dockerd_args = [
            "dockerd", f"--host=unix://{self.socket}", f"--data-root={self.root}",
            f"--exec-root={self.run}", f"--pidfile={self.run}.pid", f"--bip={self.bip}",
            "--iptables=false", "--ip-masq=false",
        ]  # fmt: skip
        return [
            "nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--uts", "sh", "-c",
            'hostname "$0" && exec "$@"', self.hostname, *dockerd_args,
        ]  # fmt: skip


class SwarmNodes:
    """The two nodes. `start()` builds them; `close()` removes everything it made."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tag = f"{os.getpid() % 10000}{os.urandom(2).hex()}"
        self.netns = f"rdt-{self.tag}"
        self.host_if = f"rdh{self.tag}"
        self.worker_if = f"rdw{self.tag}"
        self.subnets: list[str] = []
        self.manager_addr = ""
        self.worker_addr = ""
        self.worker: WorkerDockerd | None = None
        self.made_swarm = False
        self.manager_id = ""
        self.worker_id = ""
        self.registry_procs: list[subprocess.Popen[bytes]] = []
        self._worker_tags: list[str] = []
        self._made_swarm_once = False

    # ---------------------------------------------------------------- building

    def start(self) -> None:
        state = host_docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
        if state != "inactive":
            raise RuntimeError(
                f"the machine's dockerd is already in a swarm (state {state!r}) that this test "
                "did not make: leave it first (docker swarm leave --force)"
            )
        link = reserve_subnet()
        self.subnets.append(link)
        bip = reserve_subnet()
        self.subnets.append(bip)
        self.manager_addr, self.worker_addr = f"{link}.1", f"{link}.2"
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.worker_if)
        run("ip", "link", "set", self.worker_if, "netns", self.netns)
        run("ip", "addr", "add", f"{self.manager_addr}/24", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        in_ns = ("ip", "-n", self.netns)
        run(*in_ns, "addr", "add", f"{self.worker_addr}/24", "dev", self.worker_if)
        run(*in_ns, "link", "set", self.worker_if, "up")
        run(*in_ns, "link", "set", "lo", "up")
        self.worker = WorkerDockerd(self.workdir, self.netns, self.netns, f"{bip}.1/24")
        self._worker_tags.append(self.worker.tag)
        self.worker.start()
        host_docker("swarm", "init", "--advertise-addr", self.manager_addr)
        self.made_swarm = self._made_swarm_once = True
        self.manager_id = host_docker("info", "--format", "{{.Swarm.NodeID}}").strip()
        self._join_worker()

    def _join_worker(self) -> None:
        """The worker joins the swarm (its id in `worker_id`) and is ready in it."""
        assert self.worker is not None
        token = host_docker("swarm", "join-token", "-q", "worker").strip()
        self.worker.docker(
            "swarm", "join", "--token", token, "--advertise-addr", self.worker_addr,
            "--listen-addr", f"{self.worker_addr}:2377", f"{self.manager_addr}:2377",
        )  # fmt: skip
        self.worker_id = self.worker.docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
        self.wait_worker("ready")

    def load_image(self, image: str) -> None:
        """Copies `image` from the manager's engine to the worker's (`docker save | load`)."""
        assert self.worker is not None
        self.worker.load_image(image)

    def serve_registry(self, storage_root: Path, port: int) -> None:
        """A second docker-registry inside the worker's namespace, on its 127.0.0.1:`port`,
        serving the storage of the host's registry (`bench/registry.py`) on the same port:
        an image reference `127.0.0.1:<port>/...` then resolves on both nodes."""
        config = self.workdir / f"registry-{self.tag}.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage_root}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: {os.urandom(16).hex()}\n"
        )
        log = (self.workdir / f"registry-{self.tag}.log").open("ab")
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", "docker-registry", "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.registry_procs.append(proc)

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker's registry exited with {proc.returncode}")
            return (
                run(
                    "ip", "netns", "exec", self.netns, "bash", "-c",
                    f"exec 3<>/dev/tcp/127.0.0.1/{port}", check=False,
                ).returncode
                == 0
            )  # fmt: skip

        wait_until(answers, 30, "the worker's registry answers")

    def throttle(self, upstream_port: int, rate: float) -> int:
        """A relay inside the worker's namespace in front of its registry (`serve_registry`)
        that sends at most `rate` bytes per second (`bench/registry.py`'s `Throttle`): an
        image pulled from `127.0.0.1:<the returned port>` on the worker takes long enough to
        watch. It runs until `close()`."""
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); import registry; "
            "t = registry.Throttle(int(sys.argv[2]), float(sys.argv[3])); "
            "print(t.port, flush=True); sys.stdin.read(); t.close()"
        )
        proc = subprocess.Popen(
            [
                "nsenter", f"--net=/run/netns/{self.netns}", sys.executable, "-c", code,
                str(BENCH), str(upstream_port), str(rate),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )  # fmt: skip
        self.registry_procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip():
            raise RuntimeError(f"the worker's throttle did not start (exit {proc.poll()})")
        return int(line)

    # ---------------------------------------------------------------- looking

    def node(self, node_id: str) -> dict[str, Any]:
        return json.loads(host_docker("node", "inspect", node_id))[0]  # type: ignore[no-any-return]

    @property
    def worker_hostname(self) -> str:
        return self.netns

    @property
    def manager_hostname(self) -> str:
        return str(self.node(self.manager_id)["Description"]["Hostname"])

    def problem(self) -> str | None:
        """What keeps the topology from being as `start()` made it, or None: the worker's
        dockerd running and in the swarm, the swarm showing it ready and active."""
        if self.worker is None or self.worker.proc is None or self.worker.proc.poll() is not None:
            return "the worker's dockerd is not running"
        local = self.worker.docker(
            "info", "--format", "{{.Swarm.LocalNodeState}}", check=False, timeout=30
        ).stdout.strip()
        if local != "active":
            return f"the worker's engine is not in the swarm (its swarm state is {local!r})"
        try:
            node = self.node(self.worker_id)
        except RuntimeError as e:
            return f"the swarm does not show the worker {self.worker_id}: {e}"
        state, availability = node["Status"]["State"], node["Spec"]["Availability"]
        if (state, availability) != ("ready", "active"):
            return f"the swarm shows the worker {state} and {availability}"
        return None

    def wait_worker(self, state: str, seconds: float = 120) -> None:
        """Waits until the swarm shows the worker in `state` (`ready`, `down`)."""
        wait_until(
            lambda: self.node(self.worker_id)["Status"]["State"] == state,
            seconds,
            f"the swarm shows the worker {state}",
            interval=0.5,
        )

    def restart_worker(self) -> None:
        """Starts the worker's dockerd again (after `worker.stop()`); it rejoins the swarm."""
        assert self.worker is not None
        if self.worker.proc is None:
            self.worker.start()
        self.wait_worker("ready")

    def rejoin_worker(self) -> None:
        """The worker leaves the swarm, is removed from it and joins it again: the same engine
        (its volumes kept) as a node of a new id, in `worker_id`."""
        assert self.worker is not None
        old = self.worker_id
        self.worker.docker("swarm", "leave", timeout=60)
        self.wait_worker("down")
        host_docker("node", "rm", "--force", old)
        self._join_worker()

    # ---------------------------------------------------------------- tearing down

    def close(self) -> None:
        for proc in self.registry_procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # a throttle ends when its input does
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        self.registry_procs = []
        worker = self.worker
        if worker is not None:
            if worker.proc is not None and worker.answers():
                worker.docker("swarm", "leave", "--force", check=False, timeout=60)
            if self.worker_id:
                host_docker("node", "rm", "--force", self.worker_id, check=False)
        if self.made_swarm:
            leave_swarm()
            self.made_swarm = False
        if worker is not None:
            worker.close()
            self.worker = None
        run("ip", "netns", "del", self.netns, check=False)
        run("ip", "link", "del", self.host_if, check=False)
        for prefix in self.subnets:
            release_subnet(prefix)
        self.subnets = []

    def leftovers(self) -> list[str]:
        """What of the topology is still there after `close()` (nothing, when it worked)."""
        left = []
        if self.netns in run("ip", "netns", "list").stdout.split():
            left.append(f"network namespace {self.netns}")
        if run("ip", "link", "show", self.host_if, check=False).returncode == 0:
            left.append(f"veth {self.host_if}")
        if self.worker is not None:
            left.append("the worker's dockerd")
        for tag in self._worker_tags:
            for path in (
                Path(f"/var/lib/rustdocker-test-{tag}"),
                Path(f"/run/rustdocker-test-{tag}"),
            ):
                if path.exists():
                    left.append(str(path))
            if run("pgrep", "-f", f"rustdocker-test-{tag}/", check=False).stdout.strip():
                left.append(f"processes of rustdocker-test-{tag}")
        if self._made_swarm_once:
            state = host_docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
            if state != "inactive":
                left.append(f"the swarm (the machine's dockerd is {state})")
            if run("docker", "network", "inspect", "docker_gwbridge", check=False).returncode == 0:
                left.append("the docker_gwbridge network")
        return left


def leave_swarm() -> None:
    """The machine's dockerd leaves its swarm, and what swarm mode leaves behind goes: the
    `docker_gwbridge` network (and the ingress sandbox's endpoint on it)."""
    host_docker("swarm", "leave", "--force", check=False, timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if run("docker", "network", "inspect", "docker_gwbridge", check=False).returncode:
            return
        info = json.loads(
            host_docker("network", "inspect", "docker_gwbridge", check=False) or "[{}]"
        )[0]
        for endpoint in (info.get("Containers") or {}).values():
            # `ingress-sbox`, the routing mesh's sandbox, and `gateway_...` of old tasks.
            host_docker(
                "network", "disconnect", "--force", "docker_gwbridge", endpoint["Name"],
                check=False,
            )  # fmt: skip
        host_docker("network", "rm", "docker_gwbridge", check=False)
        time.sleep(0.5)


def missing() -> str | None:
    """What this machine lacks for the two nodes, or None."""
    problem = dockerd.missing()
    if problem:
        return problem
    for tool in ("nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is needed for the swarm worker's namespace"
    return None
