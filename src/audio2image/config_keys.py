"""The config keys described, from the config's own definitions: what `audio2image keys` prints.

Each key is described where it is defined, by its comment in config.py's Config (or the comment lines right above
it), so a new key is described by writing its definition as the others are.

    >>> print(describe_keys("lr"))  # the keys whose name or description holds "lr"
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
import typing

from audio2image.config import Config

FIELDS = [field.name for field in dataclasses.fields(Config)]


def key_docs() -> dict[str, tuple[str, str, str]]:
    """key -> (its section, its sub-section or "", its description), in Config's order, read from Config's own
    source so that a key is described where it is defined: by the comment on its line, else by the comment lines
    right above it. Sections are the `# --- x ---` lines; a comment block above a key that has its own comment
    heads a sub-section. Descriptions are empty where the source is not installed."""
    try:
        lines = inspect.getsource(Config).splitlines(keepends=True)
    except (OSError, TypeError):
        return {key: ("", "", "") for key in FIELDS}
    comments = {token.start[0]: (token.string.lstrip("#").strip(), not token.line[:token.start[1]].strip())
                for token in tokenize.generate_tokens(io.StringIO("".join(lines)).readline)
                if token.type == tokenize.COMMENT}
    docs, section, sub, block = {}, "", "", []
    for number, line in enumerate(lines, 1):
        comment, alone = comments.get(number, ("", False))
        heading = re.fullmatch(r"-+\s*(.*?)\s*-+", comment) if alone else None
        if heading or alone:
            section, sub, block = (heading.group(1), "", []) if heading else (section, sub, block + [comment])
            continue
        key = re.match(r"\s+(\w+)\s*:", line)
        if key and key.group(1) in FIELDS:
            if block:
                sub, comment = (" ".join(block), comment) if comment else ("", " ".join(block))
            docs[key.group(1)] = (section, sub, comment)
        block = []
    return {key: docs.get(key, ("", "", "")) for key in FIELDS}


def describe_keys(word: str = "") -> str:
    """Every config key (or those whose name or description holds `word`) with its type, default, allowed values
    and description, by section: what `audio2image keys` prints."""
    lines, last = [], (None, None)
    for key, (section, sub, text) in key_docs().items():
        if word.lower() not in f"{key} {text}".lower():
            continue
        if section != last[0]:
            lines += ["", section or "other"]
        elif sub != last[1]:
            lines.append("")  # the keys after a sub-section are not in it
        if sub and (section, sub) != last:
            lines += textwrap.wrap(sub, 116, initial_indent="  # ", subsequent_indent="  # ")
        last = (section, sub)
        lines += [f"  {key} = {_shown_default(key)}  ({_shown_type(key)})", *([f"      {text}"] if text else [])]
    if not lines:
        return f"no config key names or describes {word!r}; `audio2image keys` lists them all"
    return ("Config keys: `key: value` in a YAML config, or `key=value` after the config on the command line.\n"
            + "\n".join(lines))


def _shown_type(key: str) -> str:
    """A key's type as `audio2image keys` names it, with its allowed values where it has a list of them."""
    from audio2image.config_checks import CHOICES

    kind = typing.get_type_hints(Config)[key]
    shown = (f"list of {typing.get_args(kind)[0].__name__}, comma-separated" if typing.get_origin(kind) is list
             else kind.__name__)
    one = "; each one of " if typing.get_origin(kind) is list else "; one of "
    return shown + (one + " | ".join(choice or '""' for choice in CHOICES[key]) if key in CHOICES else "")


def _shown_default(key: str) -> str:
    """A key's default as one writes it on the command line (lists comma-separated, booleans lower-case)."""
    default = Config().to_dict()[key]
    if isinstance(default, list):
        return ",".join(map(str, default)) or "[]"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default) if default != "" else '""'
