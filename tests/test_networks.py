"""Several networks (`networks`): the first is the one the hub reaches the server on, every one
joined before the server starts, with templated aliases; a missing network is an error naming
it, and nothing is left behind. SwarmSpawner's services take the same list (test_swarm.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jupyterhub.objects import Hub
from traitlets import TraitError

from conftest import (
    LABEL_HUB,
    SESSION_HUB_ID,
    TINY_IMAGE,
    create_body,
    docker,
    exists,
    http_get,
    inspect,
    make_spawner,
)


def test_entries_are_names_or_dicts_and_network_name_follows_the_first() -> None:
    s = make_spawner(networks=[{"name": "front", "aliases": ["{username}-nb"]}, "data"])
    assert s.networks == [
        {"name": "front", "aliases": ["{username}-nb"]},
        {"name": "data", "aliases": []},
    ]
    assert s.network_name == "front" and s.use_internal_ip is True
    # Unset: DockerSpawner's default, unchanged.
    assert make_spawner().network_name == "bridge"


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"name": "a", "alias": ["x"]}, "unknown keys ['alias']"),
        ({"aliases": ["x"]}, "'name' must be the name of a Docker network"),
        ("", "'name' must be the name of a Docker network"),
        ({"name": "a", "aliases": "x"}, "'aliases' must be a list of non-empty strings"),
        ({"name": "a", "aliases": [""]}, "'aliases' must be a list of non-empty strings"),
    ],
)
def test_bad_entries_are_refused_by_position(entry: object, says: str) -> None:
    with pytest.raises(TraitError) as refused:
        make_spawner(networks=["ok", entry])
    assert f"DockerSpawner.networks[1] = {entry!r} is not allowed" in str(refused.value)
    assert says in str(refused.value)


async def test_aliases_are_rendered_and_escaped() -> None:
    s = make_spawner(
        "Alice@x.org",
        networks=[{"name": "front", "aliases": ["{username}-nb", "{prefix}"]}, "data"],
    )
    spec = await s.build_spec()
    assert spec["network_name"] == "front"
    assert spec["networks"] == [
        {"name": "front", "aliases": ["-41lice-40x-2eorg-nb", "jupyter"]},
        {"name": "data", "aliases": []},
    ]
    body = create_body(spec)
    assert body["HostConfig"]["NetworkMode"] == "front"
    assert body["NetworkingConfig"] == {
        "EndpointsConfig": {"front": {"Aliases": ["-41lice-40x-2eorg-nb", "jupyter"]}}
    }
    # An unknown field is named with its entry.
    s = make_spawner(networks=[{"name": "front", "aliases": ["{user}"]}])
    with pytest.raises(ValueError, match=r"networks\[0\] aliases.*user"):
        await s.build_spec()


async def test_network_name_other_than_the_first_is_refused() -> None:
    s = make_spawner(network_name="front", networks=["data", "front"])
    with pytest.raises(ValueError) as refused:
        create_body(await s.build_spec())
    assert 'network_name = "front" and networks = ["data", ...] disagree' in str(refused.value)
    # The same network in both is what the default gives: fine.
    s = make_spawner(network_name="front", networks=["front", "data"])
    assert create_body(await s.build_spec())["HostConfig"]["NetworkMode"] == "front"


# ------------------------------------------------------------------ on the engine


@pytest.fixture
def networks(unique: str) -> Iterator[list[str]]:
    """Three user-defined networks of this test session."""
    names = [f"rustdocker-test-{unique}-{i}" for i in range(3)]
    for name in names:
        docker("network", "create", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", name)
    yield names
    for name in names:
        docker("network", "rm", name, check=False)


@pytest.mark.docker
async def test_two_networks_with_aliases_and_the_server_on_the_first(
    unique: str, networks: list[str]
) -> None:
    front, data, later = networks
    s = make_spawner(
        unique,
        networks=[{"name": front, "aliases": ["{username}-nb"]}, {"name": data, "aliases": ["db"]}],
    )
    ip, port = await s.start()
    info = inspect("container", s.object_name)
    joined = info["NetworkSettings"]["Networks"]
    assert set(joined) == {front, data}
    assert f"{unique}-nb" in joined[front]["Aliases"]
    assert "db" in joined[data]["Aliases"]
    assert info["HostConfig"]["NetworkMode"] == front
    # The hub reaches the server on the first network.
    assert ip == joined[front]["IPAddress"] and port == 8888
    assert http_get(ip, port).strip() == "ok"
    # Another container on the second network finds it by its alias there.
    reply = docker(
        "run", "--rm", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", "--network", data,
        TINY_IMAGE, "busybox", "wget", "-qO-", f"http://db:{port}/",
    )  # fmt: skip
    assert reply.stdout.strip() == "ok"
    # A kept container joins a network added to the list at its next start.
    await s.stop()
    s.networks = [*s.networks, later]
    await s.start()
    assert set(inspect("container", s.object_name)["NetworkSettings"]["Networks"]) == {
        front,
        data,
        later,
    }
    await s.stop()
    docker("rm", "-f", s.object_name)


@pytest.mark.docker
async def test_a_missing_network_is_named_and_nothing_is_left(
    unique: str, networks: list[str]
) -> None:
    missing = f"rustdocker-test-{unique}-missing"
    s = make_spawner(unique, networks=[networks[0], missing], remove=True)
    with pytest.raises(Exception) as failed:
        await s.start()
    message = str(failed.value)
    assert f"the Docker network '{missing}' (networks[1]) does not exist" in message
    assert f"docker network create {missing}" in message
    # Created, then removed: the server never ran half-attached.
    assert not exists("container", s.object_name)
    # The first network missing: refused by the create itself.
    s = make_spawner(unique, networks=[missing, networks[0]], remove=True)
    with pytest.raises(Exception) as failed:
        await s.start()
    assert f"the Docker network '{missing}' (networks[0]) does not exist" in str(failed.value)
    assert not exists("container", s.object_name)


async def test_aliases_from_escaped_names_pass_and_raw_names_with_dots_do_not() -> None:
    # Escaped, a dotted name is one DNS label: fine.
    s = make_spawner("pypi.org", networks=[{"name": "front", "aliases": ["{username}"]}])
    assert (await s.build_spec())["networks"][0]["aliases"] == ["pypi-2eorg"]
    # Raw, it would answer for pypi.org to every container on the network.
    s = make_spawner("pypi.org", networks=[{"name": "front", "aliases": ["nb-{raw_username}"]}])
    with pytest.raises(ValueError) as refused:
        await s.build_spec()
    message = str(refused.value)
    assert "DockerSpawner.networks[0] aliases: the alias 'nb-{raw_username}'" in message
    assert "{raw_username} = 'pypi.org'" in message
    assert "only letters, digits, '-' and '_'" in message
    # A raw name of allowed characters is fine.
    s = make_spawner("bob", networks=[{"name": "front", "aliases": ["{raw_username}"]}])
    assert (await s.build_spec())["networks"][0]["aliases"] == ["bob"]


async def test_an_alias_that_is_the_hubs_host_name_is_refused() -> None:
    s = make_spawner("jupyterhub", networks=["front", {"name": "data", "aliases": ["{username}"]}])
    s.hub = Hub(ip="0.0.0.0", port=8081, base_url="/hub/", connect_ip="jupyterhub.internal")
    with pytest.raises(ValueError) as refused:
        await s.build_spec()
    message = str(refused.value)
    assert "networks[1] aliases: the alias '{username}' renders to 'jupyterhub'" in message
    assert "other servers' calls to the hub" in message
    # Another user's alias on the same configuration is fine; so is the hub reached by an IP.
    s.user.name = "alice"
    assert (await s.build_spec())["networks"][1]["aliases"] == ["alice"]
    s = make_spawner("127", networks=[{"name": "front", "aliases": ["{username}"]}])
    assert (await s.build_spec())["networks"][0]["aliases"] == ["127"]


@pytest.mark.docker
async def test_a_user_cannot_take_a_dotted_name_on_the_network(
    unique: str, networks: list[str]
) -> None:
    # The operator meant "the server answers as its user's name"; a user named like a host
    # elsewhere would have every container on the network reach it instead of that host.
    front, data, _ = networks
    user = f"{unique}.example.org"
    s = make_spawner(
        user, networks=[front, {"name": data, "aliases": ["{raw_username}"]}], remove=True
    )
    with pytest.raises(ValueError, match=r"\{raw_username\} = '" + unique):
        await s.start()
    assert not exists("container", s.object_name)
