"""Volume naming strategies for `c.DockerSpawner.format_volume_name`.

The names match DockerSpawner's module of the same name, so existing configuration that sets
one of these keeps working with `rustdocker.volumenamingstrategy.<name>`.
"""

from __future__ import annotations

from typing import Any

from . import _core


def default_format_volume_name(template: str, spawner: Any) -> str:
    """Render `template` with the spawner's template namespace, strictly: an unknown `{field}`
    raises `ValueError` naming the field, the template and the fields available."""
    return _core.format_template(template, spawner.template_namespace())


def escaped_format_volume_name(template: str, spawner: Any) -> str:
    """Identical to `default_format_volume_name` since DockerSpawner 12, where `{username}` is
    already escaped; kept for configurations that name it."""
    return default_format_volume_name(template, spawner)
