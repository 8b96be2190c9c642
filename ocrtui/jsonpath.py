"""A small path syntax for picking values out of a JSON document.

Used where the config says where a value lives in someone else's JSON: the per-page texts
of a document API (``[[api_arms]] text_path``) and the state in a provider's status output
(``[pod.provider] state_json``).

Syntax: keys separated by dots, each optionally followed by brackets::

    text                 the value of key "text"
    pages[*].text        "text" of every element of the list "pages" (``[]`` is the same)
    results[0].markdown  "markdown" of the first element
    data.pages[].content nested keys

A path with a ``[*]`` yields one value per element; one without yields exactly one value.
Keys are names of letters, digits, ``_`` and ``-`` (JSON keys with dots or brackets in
them cannot be addressed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_KEY = re.compile(r"[A-Za-z0-9_-]+")
_INDEX = re.compile(r"\[(\*|\d*)\]")

Step = str | int | None  # key, list index, or None: every element


class PathMissing(LookupError):
    """The document has no value where the path points; the message says where it stops."""


@dataclass(frozen=True)
class JsonPath:
    text: str
    steps: tuple[Step, ...]

    @property
    def fans_out(self) -> bool:
        return None in self.steps

    def extract(self, doc: Any) -> list[Any]:
        """Every value the path reaches (one, unless it fans out); raises PathMissing."""
        values: list[tuple[str, Any]] = [("", doc)]
        for step in self.steps:
            nxt: list[tuple[str, Any]] = []
            for where, value in values:
                if isinstance(step, str):
                    here = f"{where}.{step}" if where else step
                    if not isinstance(value, dict) or step not in value:
                        raise PathMissing(f"no key {step!r} at {where or 'the top'}")
                    nxt.append((here, value[step]))
                    continue
                if not isinstance(value, list):
                    raise PathMissing(f"{where or 'the top'} is not a list")
                if step is None:
                    nxt.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
                elif step < len(value):
                    nxt.append((f"{where}[{step}]", value[step]))
                else:
                    raise PathMissing(f"{where} has {len(value)} elements, no [{step}]")
            values = nxt
        return [v for _, v in values]


def compile_path(text: str) -> JsonPath:
    """Parse a path; ValueError names the part that is wrong."""
    steps: list[Step] = []
    for part in text.split("."):
        m = _KEY.match(part)
        if not m:
            raise ValueError(f"{text!r}: {part!r} does not start with a key name")
        steps.append(m.group())
        rest = part[m.end() :]
        while rest:
            idx = _INDEX.match(rest)
            if not idx:
                raise ValueError(f"{text!r}: {rest!r} is not [*], [] or [N]")
            steps.append(int(idx.group(1)) if idx.group(1) not in ("*", "") else None)
            rest = rest[idx.end() :]
    return JsonPath(text, tuple(steps))
