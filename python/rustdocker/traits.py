"""Trait types shared by the spawners."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from traitlets import TraitError, TraitType
from traitlets.config import LoggingConfigurable

from . import _core

if TYPE_CHECKING:
    from jupyterhub.spawner import Spawner as SpawnerPart
else:

    class SpawnerPart(LoggingConfigurable):
        """The base of the classes DockerSpawner is assembled from, one per concept.

        A plain configurable at run time, because JupyterHub requires every Spawner subclass to
        define start, stop and poll; a Spawner for the type checker, which sees what `self`
        really is once the parts are assembled.
        """


def memory_bytes(value: Any, setting: str) -> int | None:
    """JupyterHub's ``ByteSpecification`` rules, with the values it would turn into a crash or a
    negative limit (NaN, infinity, overflow, negatives) refused instead.

    Raises ``TraitError`` naming ``setting`` and the value.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if value < 0:
            raise TraitError(
                f"{setting} = {value!r} is negative: use a number of bytes >= 0, "
                "or a string such as '512M' or '1.5G'"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise TraitError(
                f"{setting} = {value!r} is not allowed: use a finite number of bytes >= 0, "
                "or a string such as '512M' or '1.5G'"
            )
        return int(value)
    if isinstance(value, str):
        try:
            return _core.parse_byte_specification(value)
        except ValueError as e:
            raise TraitError(f"{setting}: {e}") from None
    raise TraitError(
        f"{setting} = {value!r} is not a valid memory specification: "
        "use an integer number of bytes or a string with suffix K, M, G or T (e.g. '512M')"
    )


class ByteSpecification(TraitType[int | None, Any]):
    """A memory size: an integer of bytes, or a string with suffix K, M, G or T (1024-based).

    The same strings as JupyterHub's ``ByteSpecification`` give the same numbers, but NaN,
    infinity, overflow and negative values are a ``TraitError`` naming the setting.
    """

    default_value = None
    allow_none = True
    info_text = "an int or a string with suffix K, M, G or T"

    def validate(self, obj: Any, value: Any) -> int | None:
        owner = type(obj).__name__ if obj is not None else "Spawner"
        return memory_bytes(value, f"{owner}.{self.name}")


class UnicodeOrFalse(TraitType[str | bool, Any]):
    """A string, or False for "not set" (DockerSpawner's `post_start_cmd` type)."""

    default_value = False
    info_text = "a string or False"

    def validate(self, obj: Any, value: Any) -> str | bool:
        if value is False or value is None:
            return False
        if isinstance(value, str):
            return value
        self.error(obj, value)
