# JupyterHub on rustdocker with named servers: several servers per user, each on its own volume.
#
# Run it with `scripts/run-hub.sh examples/named_servers_config.py`. It loads
# examples/jupyterhub_config.py (image, persistence, memory limit, networking, login: see there)
# and changes this:
#
# - Named servers: `c.JupyterHub.allow_named_servers = True`, at most 3 per user besides the
#   default one. Create them on /hub/home ("Named Servers") or with the REST API:
#   `POST /hub/api/users/<name>/servers/<server-name>`. JupyterHub 6 accepts only server names
#   that are lowercase slugs (`[a-z0-9-]`, e.g. `project-1`).
# - One volume per server: the default server keeps `jupyterhub-user-<name>` (so switching from
#   jupyterhub_config.py keeps every user's files), a named server gets
#   `jupyterhub-user-<name>--<server-name>`. The `{server_suffix}` field that makes this
#   possible is added by the `format_volume_name` callable below, on top of the usual fields
#   (`{username}`, `{servername}`, `{raw_username}`, `{prefix}`...). Containers are named
#   `jupyter-<name>` and `jupyter-<name>--<server-name>` (rustdocker's default `name_template`).
#   Names are escaped as DockerSpawner escapes them: every character outside `[a-z0-9]` becomes
#   `-` and its hex code, so server `project-1` of user `alice` runs in
#   `jupyter-alice--project-2d1` on volume `jupyterhub-user-alice--project-2d1`. Hence `--`
#   never occurs inside an escaped name, and two users' or servers' volumes never collide.
# - Everything else is unchanged, including the guide's `mounts` entry, which rustdocker still
#   skips with a warning because `volumes` mounts the notebook directory already; drop it
#   (`c.DockerSpawner.mounts = []`) to silence the warning.
import os

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

base_config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jupyterhub_config.py")
if not os.path.isfile(base_config):
    # load_subconfig silently ignores a missing file; a half-configured hub is worse than none.
    raise FileNotFoundError(f"{base_config} is needed next to {__file__}")
load_subconfig(base_config)  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 3


def per_server_volume_name(template, spawner):
    """The spawner's template fields plus `{server_suffix}`: "" for the default server,
    "--<servername>" for a named one."""
    fields = dict(spawner.template_namespace())
    fields["server_suffix"] = f"--{fields['servername']}" if fields["servername"] else ""
    return template.format(**fields)


notebook_dir = c.DockerSpawner.notebook_dir
c.DockerSpawner.format_volume_name = per_server_volume_name
c.DockerSpawner.volumes = {"jupyterhub-user-{username}{server_suffix}": notebook_dir}
