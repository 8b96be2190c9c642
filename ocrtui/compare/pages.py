"""Page specs such as ``1-3,7,10-`` (1-based, inclusive, open-ended ranges allowed)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocrtui.errors import InputError

# At most 9 digits: no document has more pages, and int() refuses 4300+ digits anyway.
_PART = re.compile(r"^(\d{1,9})(?:(-)(\d{0,9}))?$")


class PageRangeError(InputError):
    """The spec is valid but asks for pages the document does not have (a per-document error)."""


@dataclass(frozen=True)
class PageSpec:
    ranges: tuple[tuple[int, int | None], ...]  # (first, last); last None = to the end
    text: str

    def select(self, n_pages: int) -> list[int]:
        """The selected 1-based page numbers, in spec order without repeats."""
        if n_pages <= 0:
            raise PageRangeError("document has no pages")
        out: list[int] = []
        seen: set[int] = set()
        for first, last in self.ranges:
            stop = n_pages if last is None else last
            if first > n_pages or stop > n_pages:
                bad = f"{first}" if last == first else f"{first}-{'' if last is None else last}"
                raise PageRangeError(
                    f"pages {bad} out of range (document has {n_pages} page"
                    f"{'s' if n_pages != 1 else ''})"
                )
            for p in range(first, stop + 1):
                if p not in seen:
                    seen.add(p)
                    out.append(p)
        return out


def parse_page_spec(spec: str) -> PageSpec:
    """Parse ``1-3,7,10-``; a malformed spec is a usage error naming the bad part."""
    text = spec.strip()
    if not text:
        raise InputError("page spec is empty (expected e.g. 1-3,7,10-)")
    ranges: list[tuple[int, int | None]] = []
    for raw in text.split(","):
        part = raw.strip()
        m = _PART.match(part)
        if not m:
            raise InputError(f"page spec {spec!r}: {part!r} is not N, N-M or N- (e.g. 1-3,7,10-)")
        first = int(m.group(1))
        last: int | None = first
        if m.group(2):
            last = int(m.group(3)) if m.group(3) else None
        if first < 1:
            raise InputError(f"page spec {spec!r}: pages are numbered from 1")
        if last is not None and last < first:
            raise InputError(f"page spec {spec!r}: range {part!r} runs backwards")
        ranges.append((first, last))
    return PageSpec(tuple(ranges), text)


ALL_PAGES = PageSpec(((1, None),), "1-")
