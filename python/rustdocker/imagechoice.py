"""Choosing the image: `allowed_images`, the spawn form and the `image` user option.

Pure helpers, no spawner state: the spawner calls them with its settings.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from tornado import web

try:  # JupyterHub >= 6: a policy refusal the hub logs without a traceback.
    from jupyterhub.spawner import SpawnException as _SpawnException
except ImportError:  # pragma: no cover - JupyterHub 5
    _SpawnException = None

#: `allowed_images` after validation: `"*"` (any image) or `{key shown to users: image}`.
AllowedImages = dict[str, str] | str


def normalize_allowed_images(value: Any, setting: str) -> AllowedImages:
    """Validate an `allowed_images` value (not a callable): `"*"`, a dict `{key: image}`, a list
    (cast to `{image: image}`) or None (nothing allowed). `ValueError` names the setting."""
    if value is None:
        return {}
    if isinstance(value, str):
        if value == "*":
            return value
        raise ValueError(
            f"{setting} = {value!r} is not allowed: '*' (any image) is the only string accepted; "
            f"use a list, e.g. [{value!r}], to allow one image"
        )
    if isinstance(value, list | tuple):
        if not all(isinstance(item, str) for item in value):
            raise ValueError(f"{setting} = {value!r} is not allowed: list images as strings")
        value = {item: item for item in value}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{setting} = {value!r} is not allowed: use a dict {{key: image}}, a list of images, "
            "'*' or a callable returning one of these"
        )
    for key, image in value.items():
        if not (isinstance(key, str) and key and isinstance(image, str) and image):
            raise ValueError(
                f"{setting}: the entry {key!r}: {image!r} is not allowed: keys and images must be "
                "non-empty strings"
            )
    return dict(value)


def options_form_html(allowed: AllowedImages, image: str) -> str:
    """The spawn form: a `<select name="image">` of the allowed keys, or '' when there is
    nothing to choose (`"*"`, or fewer than two images). The key of `image` is preselected."""
    if isinstance(allowed, str) or len(allowed) <= 1:
        return ""
    selected = next((key for key in allowed if key == image), None)
    if selected is None:
        selected = next((key for key, value in allowed.items() if value == image), None)
    options = "\n".join(
        '  <option value="{0}"{1}>{0}</option>'.format(
            html.escape(key, quote=True), " selected" if key == selected else ""
        )
        for key in allowed
    )
    return (
        '<label for="image">Select an image:</label>\n'
        '<select class="form-select" id="image" name="image" required autofocus>\n'
        f"{options}\n"
        "</select>\n"
    )


def image_from_form(form_data: dict[str, Any]) -> dict[str, Any]:
    """The default `options_from_form`: `{"image": <the selected key>}` when the form (or the
    query, `?opt-image=`) has an image, else `{}`; every other field is dropped."""
    image = form_data.get("image") if isinstance(form_data, Mapping) else None
    if isinstance(image, list | tuple):
        image = image[0] if image else None
    return {"image": image} if image else {}


def refusal(message: str, *, reason: str, status_code: int = 400) -> web.HTTPError:
    """The exception that refuses a request: JupyterHub 6's `SpawnException` (shown to the user,
    logged without a traceback), else a `tornado.web.HTTPError` with the same status and message."""
    if _SpawnException is not None:
        error: web.HTTPError = _SpawnException(message, reason=reason, status_code=status_code)
        return error
    return web.HTTPError(status_code, "%s", message)
