"""Templates: escaping, the template namespace, rendering, and memory strings."""

from __future__ import annotations

from typing import Any

import pytest
from jupyterhub.traitlets import ByteSpecification
from traitlets import HasTraits, TraitError

from conftest import make_spawner

# ------------------------------------------------------------------ escaping and rendering


def test_legacy_escape_and_custom_escape() -> None:
    s = make_spawner("Alice@x.org-a_b", escape="legacy")
    assert s.object_name == "jupyter-Alice_40x_2Eorg-a_5Fb"
    s = make_spawner("Bob", escape=lambda name: name.upper())
    assert s.object_name == "jupyter-BOB"
    with pytest.raises(TraitError, match="escape"):
        make_spawner("Bob", escape=42)


def test_template_namespace() -> None:
    s = make_spawner("Bob.Smith", "Lab1", image="localhost:5000/org/img:tag", prefix="hub")
    assert s.template_namespace() == {
        "username": "-42ob-2e-53mith",
        "safe_username": "-42ob-2e-53mith",
        "raw_username": "Bob.Smith",
        "servername": "lab1",
        "raw_servername": "Lab1",
        "imagename": "localhost-5000-org-img-tag",
        "prefix": "hub",
    }


def test_extra_templates_are_lenient() -> None:
    s = make_spawner("Alice")
    assert s._render_lenient({"owner": "{username}", "x": ["{nope}", 1]}) == {
        "owner": "-41lice",
        "x": ["{nope}", 1],
    }


async def test_notebook_dir_becomes_root_dir() -> None:
    s = make_spawner("Bob.Smith", notebook_dir="/home/jovyan/work/{username}")
    spec = await s.build_spec()
    assert spec["env"]["JUPYTERHUB_ROOT_DIR"] == "/home/jovyan/work/-42ob-2e-53mith"


# ------------------------------------------------------------------ memory strings


class _JupyterHub(HasTraits):
    """JupyterHub's own memory trait, which rustdocker's memory settings follow."""

    value = ByteSpecification(None)


def jupyterhub_bytes(value: Any) -> int | None:
    """What JupyterHub's `ByteSpecification` makes of `value`."""
    return _JupyterHub(value=value).value  # type: ignore[no-any-return]


# Every string row of the reference's ByteSpecification table, and other values: rustdocker
# gives what JupyterHub gives.
MEMORY_OK: list[Any] = [
    "1.5G", "512M", "1G", "1K", "1T", "0.5K", "1.9K", ".5G", "1.M", "+2G", "1e3M", "1E3M",
    "1_000M", " 1G", "1 G", 1024, 0, 1.7, True, False, None,
]  # fmt: skip
# Refused by both.
MEMORY_REFUSED_BY_BOTH = [
    "1G ", "2g", "1k", "1Ki", "1GB", "1B", "1P", "GG", "M", "", "1024", "0", "-5", "0x10M",
    b"1G",
]  # fmt: skip
# Where rustdocker deliberately differs: JupyterHub turns these into a negative limit, or
# crashes with an error that is not a TraitError (so names no setting); rustdocker refuses
# them with a TraitError naming the setting. The second column is JupyterHub's answer.
MEMORY_DIFFERS: list[tuple[Any, Any]] = [
    ("-1G", -1073741824),
    (-5, -5),
    (-1.0, -1),
    ("nanG", ValueError),
    (float("nan"), ValueError),
    ("infG", OverflowError),
    (float("inf"), OverflowError),
    ("1e400T", OverflowError),
]
MEMORY_BAD = [*MEMORY_REFUSED_BY_BOTH, *(value for value, _ in MEMORY_DIFFERS)]


@pytest.mark.parametrize("value", MEMORY_OK)
def test_mem_limit_values(value: Any) -> None:
    assert make_spawner(mem_limit=value).mem_limit == jupyterhub_bytes(value)


@pytest.mark.parametrize("value", MEMORY_BAD)
def test_mem_limit_bad_values_name_setting_and_value(value: Any) -> None:
    with pytest.raises(TraitError) as info:
        make_spawner(mem_limit=value)
    message = str(info.value)
    assert "mem_limit" in message, message
    if isinstance(value, str) and value:
        assert repr(value) in message or value in message, message


@pytest.mark.parametrize("value", MEMORY_REFUSED_BY_BOTH)
def test_mem_limit_refused_as_jupyterhub_refuses(value: Any) -> None:
    with pytest.raises(TraitError):
        jupyterhub_bytes(value)


@pytest.mark.parametrize(("value", "jupyterhub"), MEMORY_DIFFERS)
def test_mem_limit_refuses_what_jupyterhub_gets_wrong(value: Any, jupyterhub: Any) -> None:
    """The deliberate differences are differences: JupyterHub's answer, pinned."""
    if isinstance(jupyterhub, int):
        assert jupyterhub < 0
        assert jupyterhub_bytes(value) == jupyterhub
    else:
        with pytest.raises(jupyterhub) as info:
            jupyterhub_bytes(value)
        assert not isinstance(info.value, TraitError)


def test_mem_guarantee_uses_the_same_rules() -> None:
    assert make_spawner(mem_guarantee="512M").mem_guarantee == 536870912
    with pytest.raises(TraitError, match="mem_guarantee"):
        make_spawner(mem_guarantee="-1G")
