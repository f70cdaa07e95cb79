"""The ``--section.key VALUE`` options of ``zhcls train`` / ``zhcls sweep``, generated from the
config dataclasses (:func:`zhcls.config.config_keys`): one argparse option per key, grouped
by section, each showing its type, default and the one-line doc declared next to the field.

Values are not converted by argparse: every option records ``(flag, text)`` in order and
:func:`zhcls.config.apply_overrides` parses them after the YAML file, exactly as it parses
overrides given through the Python API, so both report errors the same way. An option that
is not a config key reaches it too (``main`` passes unknown arguments on) and fails there
with the close matches.
"""

from __future__ import annotations

import argparse
import typing

from zhcls.config import Config, ConfigKey, config_keys, sections_of, strip_optional

DEST = "config_overrides"


class _Override(argparse.Action):
    """Append ``--section.key`` and its text to ``namespace.config_overrides``, in order."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        items = list(getattr(namespace, DEST, None) or [])
        items += [self.option_strings[0], values]
        setattr(namespace, DEST, items)


def add_config_options(parser: argparse.ArgumentParser, root: type = Config) -> None:
    """``--config FILE`` plus one ``--section.key`` option per key of the config class
    ``root`` (:class:`zhcls.config.Config` for train / sweep)."""
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="YAML config (see configs/); defaults when omitted; the "
                        "--section.key options below override it")
    parser.set_defaults(**{DEST: []})
    sections = sections_of(root)
    docs = {name: (cls.__doc__ or "").strip().splitlines()[0] for name, cls in sections.items()}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for key in config_keys(root=root):
        if key.section not in groups:
            groups[key.section] = parser.add_argument_group(
                f"{key.section} (config section)", docs.get(key.section))
        groups[key.section].add_argument(
            f"--{key.dotted}", action=_Override, dest=f"_{key.section}_{key.name}",
            metavar=type_text(key), help=help_text(key), default=argparse.SUPPRESS,
            **({"nargs": "?", "const": "true"} if key.hint is bool else {}))


_TYPE_NAMES = {int: "INT", float: "FLOAT", str: "TEXT", bool: "BOOL"}


def type_text(key: ConfigKey) -> str:
    """``FLOAT``, ``{a,b}``, ``INT,...``, ``{TEXT: FLOAT}``, ``TEXT|null``: the metavar."""
    choices = key.meta.get("choices")
    if choices:
        shown = "{" + ",".join(c for c in choices if c is not None) + "}"
        return shown + ("|null" if None in choices else "")
    hint, optional = strip_optional(key.hint)
    args = [_TYPE_NAMES.get(a, "TEXT") for a in typing.get_args(hint)]
    if typing.get_origin(hint) is list:
        text = f"{args[0]},..."
    elif typing.get_origin(hint) is dict:
        text = "{" + f"{args[0]}: {args[1]}" + "}"
    else:
        text = _TYPE_NAMES.get(hint, "TEXT")
    return text + ("|null" if optional else "")


def help_text(key: ConfigKey) -> str:
    """``doc (default: VALUE)``; ``%`` escaped for argparse."""
    text = f"{key.help} (default: {_shown(key.default)})"
    return text.replace("%", "%%")


def overrides_of(args: argparse.Namespace) -> list[str]:
    """The ``--section.key value`` items given, in order, then any unknown arguments (which
    :func:`zhcls.config.apply_overrides` rejects with the close matches)."""
    return list(getattr(args, DEST, [])) + list(getattr(args, "overrides", []) or [])


def _shown(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)
