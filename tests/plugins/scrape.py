"""Scraping the metrics endpoint (ocrtui/export.py) as a scraper would: one GET of
/metrics, parsed by prometheus_client's own parser; a pod that stays as it is."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ocrtui.config import ListenAddress
from ocrtui.status import Snapshot


@dataclass(frozen=True)
class FixedSource:
    """A pod for the endpoint whose snapshot never changes."""

    snapshot: Snapshot


async def scrape(address: ListenAddress) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample now: (name, sorted labels) -> value."""
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.get(f"http://{address.host}:{address.port}/metrics")
    r.raise_for_status()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def arm_series(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], arm: str
) -> dict[str, float]:
    """The ``ocrtui_compare_*`` samples of one arm, by name."""
    return {
        name: v
        for (name, labels), v in samples.items()
        if name.startswith("ocrtui_compare_") and labels == (("arm", arm),)
    }
