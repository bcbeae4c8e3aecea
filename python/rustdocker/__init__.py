"""rustdocker: a JupyterHub spawner running each user's server in a Docker container.

Use it with one line of configuration, keeping every `c.DockerSpawner.*` setting::

    c.JupyterHub.spawner_class = "rustdocker.Spawner"
"""

from ._core import (
    ConflictError,
    DockerApiError,
    DockerConnectionError,
    NotFoundError,
    RustDockerError,
)
from ._core import __version__ as _core_version
from .spawner import DockerSpawner
from .swarm import SwarmSpawner
from .systemuser import SystemUserSpawner

#: The documented short name: `c.JupyterHub.spawner_class = "rustdocker.Spawner"`.
Spawner = DockerSpawner

__version__ = _core_version

__all__ = [
    "ConflictError",
    "DockerApiError",
    "DockerConnectionError",
    "DockerSpawner",
    "NotFoundError",
    "RustDockerError",
    "Spawner",
    "SwarmSpawner",
    "SystemUserSpawner",
    "__version__",
]
