"""Write `config.example.toml` from the config dataclasses, their defaults and their docstrings.

`python -m nstbot.config_example > config.example.toml`; a test checks the file is up to date.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import json
import textwrap
import typing
from typing import Any

from nstbot import config as config_module
from nstbot.config import Config

HEADER = """\
# nstbot configuration: every key, with its default. Every key is optional: copy this file to
# config.toml and keep only what you change. Any key can be overridden from the environment as
# NSTBOT_<SECTION>_<KEY>, for example NSTBOT_ENGINE_DEVICE=cuda:1 or
# NSTBOT_EXECUTOR_DEVICES=cuda:0,cuda:1.
# The bot token is never read from this file: set DISCORD_TOKEN or bot.token_file.
"""


def field_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass (attribute docstrings)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def toml_value(value: Any) -> str:
    """A default value written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _keys(cls: type, instance: Any) -> list[str]:
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls, vars(config_module))
    lines: list[str] = []
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            continue
        doc = docs.get(f.name, "")
        if typing.get_origin(hints[f.name]) is typing.Literal:
            allowed = ", ".join(toml_value(v) for v in typing.get_args(hints[f.name]))
            doc = f"{doc} One of: {allowed}.".strip()
        if doc:
            lines.extend(f"# {line}" for line in textwrap.wrap(doc, 98))
        if value is None:
            lines.append(f"# {f.name} = (not set)")
        else:
            lines.append(f"{f.name} = {toml_value(value)}")
    return lines


def example_toml() -> str:
    """The full example config text."""
    defaults = Config()
    out = [HEADER, *_keys(Config, defaults)]
    hints = typing.get_type_hints(Config, vars(config_module))
    for f in dataclasses.fields(Config):
        section = getattr(defaults, f.name)
        if not dataclasses.is_dataclass(section):
            continue
        out.append("")
        doc = inspect.getdoc(hints[f.name])
        if doc and not doc.startswith(f"{hints[f.name].__name__}("):
            out.append(f"# {' '.join(doc.split())}")
        out.append(f"[{f.name}]")
        out.extend(_keys(hints[f.name], section))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(example_toml(), end="")
