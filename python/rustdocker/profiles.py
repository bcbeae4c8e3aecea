"""Profiles: `profile_list`, named sets of settings a user chooses from when starting a server
(the spawn form, the REST API's `user_options`, or `/hub/spawn?opt-profile=<slug>`).

The shape is KubeSpawner's, so a KubeSpawner `profile_list` moves over as it is: each profile
has a `display_name`, an optional `slug`, `description` and `default`, a `spawner_override`
(`kubespawner_override` accepted) of this spawner's settings, and `profile_options` whose
`choices` (and an optional free-form `unlisted_choice`) override further.

The pure helpers at the top hold the rules (checking a list, the form, reading the form);
`Profiles` applies the chosen profile for one start and undoes it before the next.
"""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Callable, Mapping
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import TraitError, default, validate

from .imagechoice import ImageChoice, maybe_await, options_form_html, refusal

#: What a select sends for "Other..." (the free-form `unlisted_choice`).
UNLISTED = "--unlisted-choice"
#: KubeSpawner settings that exist here under another name.
KUBESPAWNER_NAMES = {"image_spec": "image", "image_pull_policy": "pull_policy"}
PROFILE_KEYS = {
    "display_name",
    "slug",
    "description",
    "default",
    "spawner_override",
    "kubespawner_override",
    "profile_options",
}
OPTION_KEYS = {"display_name", "choices", "unlisted_choice"}
CHOICE_KEYS = {"display_name", "default", "spawner_override", "kubespawner_override"}
UNLISTED_KEYS = {
    "enabled",
    "display_name",
    "display_name_in_choices",
    "validation_regex",
    "validation_message",
    "spawner_override",
    "kubespawner_override",
}
# Option names become parts of form field names and user option keys.
OPTION_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# A free-form value longer than this is refused before any regex sees it.
MAX_UNLISTED = 1000


def slugify(name: str) -> str:
    """A profile's slug made from its display name: lower case, runs of anything but a-z and
    0-9 turned into one `-`."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "profile"


class ProfileError(ValueError):
    """A `profile_list` that cannot be used; the message names the setting and the entry."""


def _keys(where: str, value: Any, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProfileError(f"{where} must be a dict, not {value!r}")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ProfileError(
            f"{where} has unknown keys {', '.join(map(repr, unknown))}: "
            f"allowed are {', '.join(sorted(allowed))}"
        )
    return value


def _text(where: str, value: Any, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ProfileError(f"{where} must be a non-empty string, not {value!r}")
    return value


def _override(where: str, entry: Mapping[str, Any], is_setting: Callable[[str], bool]) -> dict:
    """An entry's `spawner_override` (or `kubespawner_override`), its keys checked and
    KubeSpawner's names for settings that exist here translated."""
    if "spawner_override" in entry and "kubespawner_override" in entry:
        raise ProfileError(f"{where} has both spawner_override and kubespawner_override: use one")
    key = "kubespawner_override" if "kubespawner_override" in entry else "spawner_override"
    value = entry.get(key) or {}
    if not isinstance(value, Mapping):
        raise ProfileError(f"{where}.{key} must be a dict of settings, not {value!r}")
    out = {}
    for name, setting_value in value.items():
        setting = KUBESPAWNER_NAMES.get(name, name)
        if not isinstance(setting, str) or not is_setting(setting):
            raise ProfileError(
                f"{where}.{key}: {name!r} is not a setting of this spawner, so it has no meaning "
                "here (Kubernetes-only settings have none); use its settings, e.g. image, "
                "mem_limit, cpu_limit, mem_guarantee, cpu_guarantee, environment, volumes, "
                "extra_host_config"
            )
        out[setting] = setting_value
    return out


def normalize_profile_list(
    value: Any, setting: str, is_setting: Callable[[str], bool]
) -> list[dict[str, Any]]:
    """Check a `profile_list` value (not a callable) and return it in one shape: a list of
    profiles, each with `slug`, `display_name`, `description`, `default` (exactly one is),
    `override` and `options` (`{name: {display_name, choices: {key: {display_name, default,
    override}}, default, unlisted}}`). Raises `ProfileError` naming the setting and the entry."""
    if value is None:
        return []
    if isinstance(value, Mapping):  # KubeSpawner's dict form: values in the order of the keys
        value = [value[k] for k in sorted(value)]
    if not isinstance(value, list | tuple):
        raise ProfileError(
            f"{setting} = {value!r} is not allowed: use a list of profiles (dicts), or a "
            "callable returning one"
        )
    profiles: list[dict[str, Any]] = []
    for index, raw in enumerate(value):
        where = f"{setting}[{index}]"
        entry = _keys(where, raw, PROFILE_KEYS)
        display = _text(f"{where}.display_name", entry.get("display_name"), required=True)
        where = f"{setting}[{index}] ({display!r})"
        slug = _text(f"{where}.slug", entry.get("slug")) or slugify(display)
        if any(p["slug"] == slug for p in profiles):
            raise ProfileError(f"{where}: the slug {slug!r} is used by another profile")
        options_raw = entry.get("profile_options") or {}
        if not isinstance(options_raw, Mapping):
            raise ProfileError(f"{where}.profile_options must be a dict, not {options_raw!r}")
        options = {}
        for name, option_raw in options_raw.items():
            if not isinstance(name, str) or not OPTION_NAME.fullmatch(name) or name == "profile":
                raise ProfileError(
                    f"{where}.profile_options: the name {name!r} is not allowed: use letters, "
                    "digits, '_', '.' and '-' (and not 'profile')"
                )
            options[name] = _option(f"{where}.profile_options[{name!r}]", option_raw, is_setting)
        profiles.append(
            {
                "slug": slug,
                "display_name": display,
                "description": _text(f"{where}.description", entry.get("description")),
                "default": bool(entry.get("default")),
                "override": _override(where, entry, is_setting),
                "options": options,
            }
        )
    if profiles:
        first = next((p for p in profiles if p["default"]), profiles[0])
        for p in profiles:
            p["default"] = p is first
    return profiles


def _option(where: str, raw: Any, is_setting: Callable[[str], bool]) -> dict[str, Any]:
    entry = _keys(where, raw, OPTION_KEYS)
    choices_raw = entry.get("choices") or {}
    if not isinstance(choices_raw, Mapping):
        raise ProfileError(f"{where}.choices must be a dict, not {choices_raw!r}")
    choices = {}
    for key, choice_raw in choices_raw.items():
        if not isinstance(key, str) or not key or key == UNLISTED:
            raise ProfileError(f"{where}.choices: the key {key!r} is not allowed")
        cwhere = f"{where}.choices[{key!r}]"
        choice = _keys(cwhere, choice_raw, CHOICE_KEYS)
        choices[key] = {
            "display_name": _text(f"{cwhere}.display_name", choice.get("display_name")) or key,
            "default": bool(choice.get("default")),
            "override": _override(cwhere, choice, is_setting),
        }
    unlisted = None
    unlisted_raw = entry.get("unlisted_choice")
    if unlisted_raw is not None:
        uwhere = f"{where}.unlisted_choice"
        u = _keys(uwhere, unlisted_raw, UNLISTED_KEYS)
        if u.get("enabled"):
            pattern = _text(f"{uwhere}.validation_regex", u.get("validation_regex"))
            try:
                regex = re.compile(pattern) if pattern else None
            except re.error as e:
                raise ProfileError(
                    f"{uwhere}.validation_regex = {pattern!r} is not a valid regular "
                    f"expression: {e}"
                ) from None
            unlisted = {
                "display_name": _text(f"{uwhere}.display_name", u.get("display_name")),
                "display_name_in_choices": _text(
                    f"{uwhere}.display_name_in_choices", u.get("display_name_in_choices")
                )
                or "Other...",
                "regex": regex,
                "validation_message": _text(
                    f"{uwhere}.validation_message", u.get("validation_message")
                ),
                "override": _override(uwhere, u, is_setting),
            }
    if not choices and unlisted is None:
        raise ProfileError(f"{where} offers nothing: give it choices or an enabled unlisted_choice")
    default_choice = next(
        (k for k, c in choices.items() if c["default"]), next(iter(choices), None)
    )
    return {
        "display_name": _text(f"{where}.display_name", entry.get("display_name")) or "",
        "choices": choices,
        "default": default_choice,
        "unlisted": unlisted,
    }


def _field(slug: str, option: str) -> str:
    return f"profile-option-{slug}--{option}"


def profiles_form_html(profiles: list[dict[str, Any]], selected: Mapping[str, Any]) -> str:
    """The spawn form for `profiles` (Bootstrap 5, as JupyterHub 6's spawn page): one radio
    button per profile, with its description and a select per option (and a text field for an
    "Other..." value where one is allowed). `selected` (the last `user_options`) preselects."""
    chosen = selected.get("profile")
    if not any(p["slug"] == chosen for p in profiles):
        chosen = next(p["slug"] for p in profiles if p["default"])
    esc = html.escape
    parts = ['<div class="rustdocker-profiles">', '<p class="form-label">Select a profile:</p>']
    for p in profiles:
        slug = p["slug"]
        pid = esc(f"profile-item-{slug}", quote=True)
        checked = " checked" if slug == chosen else ""
        parts.append(f'<div class="form-check border rounded p-3 ps-5 mb-2" data-profile="{pid}">')
        parts.append(
            f'<input class="form-check-input" type="radio" name="profile" id="{pid}" '
            f'value="{esc(slug, quote=True)}"{checked}>'
        )
        parts.append(
            f'<label class="form-check-label fw-bold" for="{pid}">{esc(p["display_name"])}</label>'
        )
        if p["description"]:
            parts.append(f'<div class="form-text">{esc(p["description"])}</div>')
        for name, option in p["options"].items():
            parts.extend(_option_html(slug, name, option, selected if slug == chosen else {}))
        parts.append("</div>")
    parts.append("</div>")
    parts.append(_FORM_SCRIPT)
    return "\n".join(parts)


def _option_html(
    slug: str, name: str, option: dict[str, Any], selected: Mapping[str, Any]
) -> list[str]:
    esc = html.escape
    field = _field(slug, name)
    fid = esc(field, quote=True)
    unlisted = option["unlisted"]
    previous_other = selected.get(f"{name}--unlisted-choice") if unlisted else None
    current = UNLISTED if previous_other else selected.get(name)
    if current not in option["choices"] and current != UNLISTED:
        current = option["default"] if option["default"] is not None else UNLISTED
    label = esc(option["display_name"] or name)
    out = ['<div class="mt-2">', f'<label class="form-label" for="{fid}">{label}</label>']
    data = f' data-unlisted="{fid}--unlisted-choice"' if unlisted else ""
    out.append(f'<select class="form-select" id="{fid}" name="{fid}"{data}>')
    for key, choice in option["choices"].items():
        sel = " selected" if key == current else ""
        out.append(
            f'<option value="{esc(key, quote=True)}"{sel}>{esc(choice["display_name"])}</option>'
        )
    if unlisted:
        sel = " selected" if current == UNLISTED else ""
        out.append(
            f'<option value="{UNLISTED}"{sel}>{esc(unlisted["display_name_in_choices"])}</option>'
        )
    out.append("</select>")
    if unlisted:
        value = esc(str(previous_other or ""), quote=True)
        placeholder = esc(unlisted["display_name"] or unlisted["display_name_in_choices"], True)
        out.append(
            f'<input type="text" class="form-control mt-1" id="{fid}--unlisted-choice" '
            f'name="{fid}--unlisted-choice" value="{value}" placeholder="{placeholder}" '
            f'aria-label="{placeholder}">'
        )
        if unlisted["validation_message"]:
            out.append(f'<div class="form-text">{esc(unlisted["validation_message"])}</div>')
    out.append("</div>")
    return out


# Shows a free-form field only while its "Other..." is selected, and selects a profile when one
# of its options is touched. The hub checks everything again: this is for people, not security.
_FORM_SCRIPT = """<script>
(function () {
  document.querySelectorAll(".rustdocker-profiles select[data-unlisted]").forEach(function (s) {
    var input = document.getElementById(s.dataset.unlisted);
    function sync() {
      var other = s.value === "--unlisted-choice";
      input.hidden = !other;
      input.disabled = !other;
    }
    s.addEventListener("change", sync);
    sync();
  });
  document.querySelectorAll(".rustdocker-profiles [data-profile]").forEach(function (box) {
    function choose() { document.getElementById(box.dataset.profile).checked = true; }
    box.addEventListener("focusin", choose);
    box.addEventListener("change", choose);
  });
})();
</script>"""


def profile_options_from_form(form_data: Mapping[str, Any]) -> dict[str, Any]:
    """The default `options_from_form` with profiles: `{"profile": <slug>, <option>: <choice>,
    "<option>--unlisted-choice": <text>, "image": <key>}`, as KubeSpawner's REST API takes them.
    Only the chosen profile's fields are read; a free-form text counts only while its select says
    "Other...". The query form, `?opt-profile=<slug>&opt-profile-option-<slug>--<option>=<key>`,
    is read the same way."""

    def first(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return value[0] if value else None
        return value

    out: dict[str, Any] = {}
    image = first(form_data.get("image"))
    if image:
        out["image"] = image
    slug = first(form_data.get("profile"))
    if not slug:
        return out
    out["profile"] = slug
    prefix = f"profile-option-{slug}--"
    fields = {k[len(prefix) :]: first(v) for k, v in form_data.items() if k.startswith(prefix)}
    for name, value in fields.items():
        if name.endswith(UNLISTED) or value in (None, ""):
            continue
        if value == UNLISTED:
            other = fields.get(f"{name}{UNLISTED}")
            if other not in (None, ""):
                out[f"{name}{UNLISTED}"] = other
        else:
            out[name] = value
    return out


def _merged(current: Any, change: Any) -> Any:
    """A dict setting updated by a dict override (recursively; a None value removes the key),
    as KubeSpawner and JupyterHub's group_overrides do; anything else replaces it. New objects,
    never the configured ones changed in place."""
    if not (isinstance(change, Mapping) and isinstance(current, Mapping)):
        return copy.deepcopy(change)
    out = dict(current)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _with_value(value: Any, text: str) -> Any:
    """An unlisted choice's override with `{value}` replaced by what the user typed, in
    strings, dict keys included (as KubeSpawner's formatting of the override)."""
    if isinstance(value, str):
        return value.replace("{value}", text)
    if isinstance(value, Mapping):
        return {
            (k.replace("{value}", text) if isinstance(k, str) else k): _with_value(v, text)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_with_value(v, text) for v in value]
    return value


class Profiles(ImageChoice):
    """The profile a server starts with, and what it overrides for that start."""

    profile_list = AnyTrait(
        default_value=[],
        help="""Profiles users choose from when they start a server: named sets of settings.

        A list of dicts, each with:

        - `display_name` (required), `description` (plain text; shown escaped), `slug` (what the
          REST API and the form send; made from `display_name` when missing), `default` (the
          one preselected; the first profile otherwise);
        - `spawner_override`: `{setting: value}` applied to this spawner for that start. A
          value may be a callable `f(spawner)`; a dict value updates a dict setting (a `None`
          removes a key) instead of replacing it. KubeSpawner's `kubespawner_override` is
          accepted too (`image_spec` and `image_pull_policy` are read as `image` and
          `pull_policy`); a key that is not a setting here is an error naming it;
        - `profile_options`: `{name: {"display_name": ..., "choices": {key: {"display_name":
          ..., "default": bool, "spawner_override": {...}}}, "unlisted_choice": {"enabled":
          True, "display_name": ..., "validation_regex": "^...$", "validation_message": ...,
          "spawner_override": {"image": "myorg/{value}"}}}}`: a select per option, and a
          free-form "Other..." value checked by `validation_regex` (with Python's `re.match`;
          a value with a control character, such as a line break, is always refused), whose
          `{value}` goes into the override's strings and dict keys. A value the setting then
          refuses is refused with HTTP 400 too.

        Users choose through the spawn form, the REST API's `user_options`
        (`{"profile": "<slug>", "<option>": "<choice key>", "<option>--unlisted-choice":
        "<text>"}`) or `/hub/spawn?opt-profile=<slug>&opt-profile-option-<slug>--<option>=<key>`.
        An unknown profile or choice, or a free-form value failing its regex, is refused with
        HTTP 400 naming what is allowed. Overrides apply after `group_overrides` and last for
        that start only; the `image` user option (with `allowed_images`) applies after them.
        A callable `f(spawner)`, possibly async, returning such a list is called at every form
        display and every start (e.g. profiles by group). Checked when loaded: a mistake is an
        error naming the profile and the key.

        Example::

            c.DockerSpawner.profile_list = [
                {"display_name": "Small", "default": True,
                 "spawner_override": {"mem_limit": "2G", "cpu_limit": 1}},
                {"display_name": "GPU", "slug": "gpu", "description": "One GPU, 16 GB",
                 "spawner_override": {
                     "mem_limit": "16G",
                     "extra_host_config": {"device_requests": [
                         {"Driver": "nvidia", "Count": 1, "Capabilities": [["gpu"]]}]},
                 },
                 "profile_options": {"image": {"display_name": "Image", "choices": {
                     "torch": {"display_name": "PyTorch",
                               "spawner_override": {"image": "myorg/torch:2.5"}},
                     "jax": {"display_name": "JAX",
                             "spawner_override": {"image": "myorg/jax:0.4"}}}}}},
            ]
        """,
    ).tag(config=True)

    @validate("profile_list")
    def _validate_profile_list(self, proposal: Any) -> Any:
        value = proposal["value"]
        if callable(value):
            return value
        try:
            normalize_profile_list(value, self._profile_setting, self._is_setting)
        except ProfileError as e:
            raise TraitError(str(e)) from None
        return value

    @property
    def _profile_setting(self) -> str:
        return f"{type(self).__name__}.profile_list"

    def _is_setting(self, name: str) -> bool:
        return name != "profile_list" and name in self.trait_names(config=True)

    async def _get_profiles(self) -> list[dict[str, Any]]:
        """`profile_list` now, checked: a callable is called (and awaited) first."""
        value = self.profile_list
        setting = self._profile_setting
        if callable(value):
            value = await maybe_await(value(self))
            setting += " (the callable's result)"
        try:
            return normalize_profile_list(value, setting, self._is_setting)
        except ProfileError as e:
            raise TraitError(str(e)) from None

    @default("options_form")
    def _options_form_default(self) -> Any:
        if self.profile_list:
            return _profiles_options_form
        return super()._options_form_default()

    @default("options_from_form")
    def _options_from_form_default(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        if self.profile_list:
            return profile_options_from_form
        return super()._options_from_form_default()

    # Each overridden setting's value before this start's profile, restored before the next
    # start, so a profile lasts for the start it was chosen for (as the image option does).
    _profile_saved: dict[str, Any] | None = None
    _profile_applied = False
    _profile_slug: str | None = None

    def _undo_profile(self) -> None:
        # The `image` user option was applied after the profile, so it is undone first: undone
        # after, it would find the configured image and "restore" the profile's.
        self._undo_image_option()
        saved, self._profile_saved = self._profile_saved, None
        self._profile_applied = False
        self._profile_slug = None
        for name, value in (saved or {}).items():
            setattr(self, name, value)

    async def apply_group_overrides(self) -> None:
        # The hub's first step of every spawn: the last start's profile goes first.
        self._undo_profile()
        await super().apply_group_overrides()

    async def _run_apply_user_options(self, user_options: Any) -> None:
        # The hub's second step: the profile, then the hub's own `apply_user_options` without
        # the options the profile took (it would warn that nothing handled them).
        taken = await self._apply_profile()
        if isinstance(user_options, dict) and taken:
            user_options = {k: v for k, v in user_options.items() if k not in taken}
        await super()._run_apply_user_options(user_options)

    async def _apply_image_option(self) -> None:
        # start()'s first step: without the hub's preparation the profile is applied here.
        if not self._profile_applied:
            await self._apply_profile()
        self._profile_applied = False
        await super()._apply_image_option()

    # The user option keys the last applied profile took (an option may be named `image`).
    _profile_taken: frozenset[str] = frozenset()

    def _image_option_taken(self) -> bool:
        return "image" in self._profile_taken

    async def _apply_profile(self) -> set[str]:
        """Apply the chosen (or default) profile and its options' choices for this start.
        Returns the user option keys it used. Refuses (HTTP 400) an unknown profile or choice
        and a free-form value that is not allowed, naming what is."""
        if self._profile_saved is not None:
            self._undo_profile()
        self._profile_applied = True
        self._profile_taken = frozenset()
        options = self.user_options if isinstance(self.user_options, dict) else {}
        profiles = await self._get_profiles()
        requested = options.get("profile")
        if not profiles:
            if requested:
                self.log.warning(
                    "%s: user option profile=%r ignored: no profile_list is configured",
                    self._log_name,
                    requested,
                )
                return {"profile"}
            return set()
        profile = self._choose_profile(profiles, requested)
        overrides: list[tuple[str, dict[str, Any], str | None]] = [("", profile["override"], None)]
        taken = {"profile"}
        for name, option in profile["options"].items():
            other_key = f"{name}{UNLISTED}"
            taken |= {name, other_key}
            override, own = self._option_override(profile, name, option, options)
            overrides.append((f" option {name}", override, name if own else None))
        saved: dict[str, Any] = {}
        self._profile_saved = saved
        self._profile_slug = profile["slug"]
        for what, override, own_option in overrides:
            for setting, value in override.items():
                await self._override(saved, profile, what, setting, value, own_option)
        if self._image_without_option is not None:
            # The image this start runs without the `image` user option is now the profile's.
            self._image_without_option = self.image
        self.log.info(
            "%s starts with profile %r (overriding: %s)",
            self._log_name,
            profile["slug"],
            ", ".join(sorted(saved)) or "nothing",
        )
        self._profile_taken = frozenset(taken)
        return taken

    def _choose_profile(self, profiles: list[dict[str, Any]], requested: Any) -> dict[str, Any]:
        if requested in (None, ""):
            return next(p for p in profiles if p["default"])
        for p in profiles:
            if isinstance(requested, str) and p["slug"] == requested:
                return p
        allowed = ", ".join(p["slug"] for p in profiles)
        raise refusal(
            f"Profile {_shown(requested)} does not exist: choose one of: {allowed}",
            reason="profile",
        )

    def _option_override(
        self, profile: dict[str, Any], name: str, option: dict[str, Any], options: Mapping
    ) -> tuple[dict[str, Any], bool]:
        """The override of option `name` for this start, and whether it holds the user's own
        (free-form) value."""
        slug = profile["slug"]
        other = options.get(f"{name}{UNLISTED}")
        choice = options.get(name)
        choices = ", ".join(option["choices"]) or "(none)"
        if other not in (None, ""):
            unlisted = option["unlisted"]
            if unlisted is None:
                raise refusal(
                    f"Profile {slug!r} option {name!r} takes no value of your own: choose one "
                    f"of: {choices}",
                    reason="profile",
                )
            if not isinstance(other, str) or len(other) > MAX_UNLISTED:
                raise refusal(
                    f"Profile {slug!r} option {name!r}: {_shown(other)} is not allowed: give "
                    f"a string of at most {MAX_UNLISTED} characters",
                    reason="profile",
                )
            if any(c < " " or "\x7f" <= c <= "\x9f" for c in other):
                # No image, path or variable wants one, and `$` in a regex matches before a
                # trailing line break, so the regex alone would let "name\n" through.
                raise refusal(
                    f"Profile {slug!r} option {name!r}: {_shown(other)} is not allowed: it "
                    "contains a control character (such as a line break)",
                    reason="profile",
                )
            regex = unlisted["regex"]
            if regex is not None and not regex.match(other):
                rule = unlisted["validation_message"] or f"it must match {regex.pattern!r}"
                raise refusal(
                    f"Profile {slug!r} option {name!r}: {_shown(other)} is not allowed: {rule}",
                    reason="profile",
                )
            return _with_value(unlisted["override"], other), True
        if choice not in (None, ""):
            if not isinstance(choice, str) or choice not in option["choices"]:
                raise refusal(
                    f"Profile {slug!r} option {name!r}: {_shown(choice)} is not a choice: "
                    f"choose one of: {choices}",
                    reason="profile",
                )
            return dict(option["choices"][choice]["override"]), False
        if option["default"] is None:
            raise refusal(
                f"Profile {slug!r} option {name!r} needs a value of your own ({name}{UNLISTED})",
                reason="profile",
            )
        return dict(option["choices"][option["default"]]["override"]), False

    async def _override(
        self,
        saved: dict[str, Any],
        profile: dict[str, Any],
        what: str,
        setting: str,
        value: Any,
        own_option: str | None = None,
    ) -> None:
        if callable(value):
            value = await maybe_await(value(self))
        current = getattr(self, setting)
        if setting not in saved:
            saved[setting] = copy.deepcopy(current)
        try:
            setattr(self, setting, _merged(current, value))
        except TraitError as e:
            if own_option is not None:
                # The user's own value made it unusable: theirs to correct (HTTP 400). The
                # setting's full complaint, which may quote configured values, goes to the log.
                self.log.warning(
                    "%s: profile %r option %r: %s", self._log_name, profile["slug"], own_option, e
                )
                raise refusal(
                    f"Profile {profile['slug']!r} option {own_option!r}: your value cannot be "
                    f"used for {setting}: give another",
                    reason="profile",
                ) from None
            raise TraitError(
                f"{self._profile_setting}: profile {profile['slug']!r}{what} sets {setting}: {e}"
            ) from None


def _shown(value: Any) -> str:
    """A user's value in a refusal: repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


async def _profiles_options_form(spawner: Profiles) -> str:
    """`options_form` with profiles: built at every display (a callable `profile_list` may
    depend on the user; the last choice is preselected), the image select below it when
    `allowed_images` offers two or more."""
    profiles = await spawner._get_profiles()
    previous = spawner.user_options if isinstance(spawner.user_options, dict) else {}
    form = profiles_form_html(profiles, previous) if profiles else ""
    images = options_form_html(await spawner._get_allowed_images(), spawner.image)
    return form + ("\n" + images if images else "")
