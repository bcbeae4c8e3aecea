# JupyterHub on rustdocker: the data-persistence guide's configuration, ready to run.
#
# `scripts/run-hub.sh` starts JupyterHub with this file
# (`jupyterhub -f examples/jupyterhub_config.py`) on http://127.0.0.1:8000. What it sets:
#
# - Spawner: `rustdocker.Spawner`, a drop-in for `dockerspawner.DockerSpawner` (every
#   `c.DockerSpawner.*` setting below is read unchanged), running each user's server in a
#   container of `rustdocker/singleuser:latest` (built locally by images/build-singleuser.sh;
#   no registry needed).
# - Persistence, exactly as in the guide: the notebook directory is /home/jovyan/work (or
#   $DOCKER_NOTEBOOK_DIR), and each user's named Docker volume `jupyterhub-user-<name>` is
#   mounted there, so files saved in it survive a stop, a container removal and a hub restart.
#   The guide also lists a bind mount of the host directory `/jupyterhub-user-<name>` at the
#   same place; Docker cannot mount two things at one path, so rustdocker keeps the `volumes`
#   entry and skips that `mounts` entry with a warning in the hub's log (the named volume takes
#   the image's ownership of the directory, so user jovyan can write to it; a host directory
#   created by root could not be written to).
# - Resources: a 2 GB memory limit per server (`c.Spawner.mem_limit`), as in the guide.
# - Networking: the hub listens on the docker0 bridge address (172.17.0.1 usually), which is
#   where containers on the default bridge network reach the host, and tells the servers to call
#   it there. Servers publish their port on 127.0.0.1 only; the proxy serves everything at
#   http://127.0.0.1:8000 ($JUPYTERHUB_BIND_URL to change it).
# - Login: JupyterHub's DummyAuthenticator with one shared password for every user name:
#   $RUSTDOCKER_HUB_PASSWORD, default "rustdocker". Any user name is allowed; the user named
#   $RUSTDOCKER_HUB_ADMIN (default "admin") is an admin (control panel at /hub/admin). This is
#   for trying things out: use a real authenticator for anything else.
#
# Runtime files (jupyterhub.sqlite, jupyterhub_cookie_secret, jupyterhub-proxy.pid) land in the
# working directory; run-hub.sh runs the hub in .run/.
import fcntl
import os
import socket
import struct

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file


def interface_ipv4(name: str) -> str:
    """The IPv4 address of a network interface (Linux), e.g. docker0's."""
    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        packed = fcntl.ioctl(s.fileno(), siocgifaddr, struct.pack("256s", name.encode()[:15]))
    return socket.inet_ntoa(packed[20:24])


# ------------------------------------------------------------------ spawner
c.JupyterHub.spawner_class = "rustdocker.Spawner"
c.DockerSpawner.image = os.environ.get("RUSTDOCKER_IMAGE", "rustdocker/singleuser:latest")

# ------------------------------------------------------------------ persistence (the guide)
# Explicitly set notebook directory because we'll be mounting a host volume to
# it.  Most jupyter/docker-stacks *-notebook images run the Notebook server as
# user `jovyan`, and set the notebook directory to `/home/jovyan/work`.
# We follow the same convention.
notebook_dir = os.environ.get("DOCKER_NOTEBOOK_DIR") or "/home/jovyan/work"
c.DockerSpawner.notebook_dir = notebook_dir

# Mount the real user's Docker volume on the host to the notebook user's
# notebook directory in the container
c.DockerSpawner.volumes = {"jupyterhub-user-{username}": notebook_dir}

# Mount a directory on the host to the notebook user's notebook directory in the container
# (rustdocker skips this one, with a warning: `volumes` already mounts the same target).
c.DockerSpawner.mounts = [
    {"source": "/jupyterhub-user-{username}", "target": notebook_dir, "type": "bind"}
]

# ------------------------------------------------------------------ memory limit (the guide)
c.Spawner.mem_limit = "2G"

# ------------------------------------------------------------------ networking
# Containers on Docker's default bridge reach the host at the docker0 address; the engine reports no
# gateway for that network, so it is read from the interface ($DOCKER_BRIDGE_IP overrides it).
try:
    bridge_ip = os.environ.get("DOCKER_BRIDGE_IP") or interface_ipv4("docker0")
except OSError as e:
    raise SystemExit(
        f"cannot read the IPv4 address of docker0 ({e}): is the Docker engine running? "
        "Set DOCKER_BRIDGE_IP to the address containers reach this host at."
    ) from None
c.JupyterHub.hub_ip = bridge_ip
c.JupyterHub.hub_connect_ip = bridge_ip
c.JupyterHub.bind_url = os.environ.get("JUPYTERHUB_BIND_URL", "http://127.0.0.1:8000")

# ------------------------------------------------------------------ login
c.JupyterHub.authenticator_class = "jupyterhub.auth.DummyAuthenticator"
# One shared password (JupyterHub >= 5.3 logs that this setting is deprecated in favour of
# SharedPasswordAuthenticator, which wants a 32-character admin password; this is a demo).
c.DummyAuthenticator.password = os.environ.get("RUSTDOCKER_HUB_PASSWORD", "rustdocker")
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {os.environ.get("RUSTDOCKER_HUB_ADMIN", "admin")}
