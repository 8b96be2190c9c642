"""Run against run: two runs of the same pages side by side (MTP on vs off, two vLLM
versions, two prompts), as a frozen typed diff. Pure: two loaded runs in, the diff out;
against_report.py loads the run directories and writes against.md / against.html.

``before`` is the run compared against (``--against OTHER_RUN_DIR``), ``after`` the run
the report is written into; a delta is after − before. Per model present in both runs,
overall and per category:

- CER and the critical-string pass rate: the run's own figures (summary.json);
- TEDS: the mean page TEDS over the pages both runs scored with it (results.jsonl's
  ``teds``, where a run recorded one);
- warm latency p50 and throughput (images/s): summary.json (overall only: the speed phases
  have no categories).

Pages are compared where both runs have the page for that model; the others are listed as
left out, and so are models only one run has. When the page sets differ, summary.json's
figures still cover each run's own pages, which the diff says (``same_pages``).

A page *changed* when it failed in one run only, or its CER or TEDS moved. Worst
regressions first: pages that newly failed, then by how much worse they got (CER up plus
TEDS down), the improvements last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import fmean
from typing import Literal

# Changes under this are rounding (the stored figures have 4-6 decimals), not a change.
EPSILON = 1e-6

PageKey = tuple[str, int, str]  # doc, page, model


@dataclass(frozen=True)
class PageFigures:
    """One page of one model in one run (a results.jsonl line)."""

    category: str
    ok: bool
    cer: float | None
    teds: float | None = None


@dataclass(frozen=True)
class CategoryFigures:
    cer: float | None
    critical_pass_rate: float | None


@dataclass(frozen=True)
class ModelFigures:
    """One model's figures from a run's summary.json."""

    cer: float | None
    critical_pass_rate: float | None
    latency_warm_p50_s: float | None
    throughput_imgs_per_s: float | None
    by_category: Mapping[str, CategoryFigures] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedRun:
    """What the diff reads of a run directory."""

    name: str  # how the report names the run (its directory)
    models: Mapping[str, ModelFigures]
    pages: Mapping[PageKey, PageFigures]


Better = Literal["lower", "higher"]
Verdict = Literal["better", "worse", "same", "n/a"]


@dataclass(frozen=True)
class MetricDelta:
    metric: str  # cer, critical_pass_rate, teds, latency_warm_p50_s, throughput_imgs_per_s
    before: float | None
    after: float | None
    better: Better

    @property
    def delta(self) -> float | None:
        return None if self.before is None or self.after is None else self.after - self.before

    @property
    def verdict(self) -> Verdict:
        d = self.delta
        if d is None:
            return "n/a"
        if abs(d) <= EPSILON:
            return "same"
        return "better" if (d < 0) == (self.better == "lower") else "worse"


@dataclass(frozen=True)
class ScopeDelta:
    """One model's metrics, over all its pages (``category`` None) or one category's."""

    model: str
    category: str | None
    metrics: tuple[MetricDelta, ...]


@dataclass(frozen=True)
class PageChange:
    doc: str
    page: int
    model: str
    category: str
    before: PageFigures
    after: PageFigures

    @property
    def newly_failed(self) -> bool:
        return self.before.ok and not self.after.ok

    @property
    def regression(self) -> float:
        """How much worse the page got: CER up plus TEDS down (negative: better)."""
        if self.before.ok != self.after.ok:
            return 1.0 if self.newly_failed else -1.0
        worse = 0.0
        if self.before.cer is not None and self.after.cer is not None:
            worse += self.after.cer - self.before.cer
        if self.before.teds is not None and self.after.teds is not None:
            worse += self.before.teds - self.after.teds
        return worse


@dataclass(frozen=True)
class RunDiff:
    before: str
    after: str
    models: tuple[str, ...]  # in both runs
    models_left_out: tuple[str, ...]  # in one run only
    pages_compared: int  # (doc, page, model) in both runs, for the models in both
    only_before: tuple[PageKey, ...]
    only_after: tuple[PageKey, ...]
    scopes: tuple[ScopeDelta, ...]
    changes: tuple[PageChange, ...]  # worst regression first

    @property
    def same_pages(self) -> bool:
        return not self.only_before and not self.only_after


def _mean_teds(
    before: LoadedRun, after: LoadedRun, keys: list[PageKey]
) -> tuple[float | None, float | None]:
    pairs = [
        (b, a)
        for k in keys
        if (b := before.pages[k].teds) is not None and (a := after.pages[k].teds) is not None
    ]
    if not pairs:
        return None, None
    return fmean(b for b, _ in pairs), fmean(a for _, a in pairs)


def _scope(
    model: str,
    category: str | None,
    before: LoadedRun,
    after: LoadedRun,
    keys: list[PageKey],
) -> ScopeDelta:
    mb, ma = before.models[model], after.models[model]
    if category is None:
        cb: CategoryFigures | ModelFigures | None = mb
        ca: CategoryFigures | ModelFigures | None = ma
    else:
        cb, ca = mb.by_category.get(category), ma.by_category.get(category)
    tb, ta = _mean_teds(before, after, keys)
    metrics = [
        MetricDelta("cer", cb.cer if cb else None, ca.cer if ca else None, "lower"),
        MetricDelta(
            "critical_pass_rate",
            cb.critical_pass_rate if cb else None,
            ca.critical_pass_rate if ca else None,
            "higher",
        ),
        MetricDelta("teds", tb, ta, "higher"),
    ]
    if category is None:
        metrics += [
            MetricDelta("latency_warm_p50_s", mb.latency_warm_p50_s, ma.latency_warm_p50_s,
                        "lower"),
            MetricDelta("throughput_imgs_per_s", mb.throughput_imgs_per_s,
                        ma.throughput_imgs_per_s, "higher"),
        ]  # fmt: skip
    return ScopeDelta(model, category, tuple(metrics))


def diff_runs(before: LoadedRun, after: LoadedRun) -> RunDiff:
    """``after`` against ``before`` (module docstring)."""
    models = tuple(m for m in after.models if m in before.models)
    left_out = tuple(sorted(set(before.models) ^ set(after.models)))
    shared = sorted(k for k in after.pages if k in before.pages and k[2] in models)
    only_before = tuple(sorted(k for k in before.pages if k not in after.pages))
    only_after = tuple(sorted(k for k in after.pages if k not in before.pages))
    scopes: list[ScopeDelta] = []
    for m in models:
        mine = [k for k in shared if k[2] == m]
        scopes.append(_scope(m, None, before, after, mine))
        categories = sorted(
            {*before.models[m].by_category, *after.models[m].by_category}
            | {after.pages[k].category for k in mine}
        )
        for c in categories:
            in_c = [k for k in mine if after.pages[k].category == c]
            scopes.append(_scope(m, c, before, after, in_c))
    changes = [
        PageChange(k[0], k[1], k[2], after.pages[k].category, before.pages[k], after.pages[k])
        for k in shared
        if _changed(before.pages[k], after.pages[k])
    ]
    changes.sort(key=lambda c: (not c.newly_failed, -c.regression, c.doc, c.page, c.model))
    return RunDiff(
        before.name, after.name, models, left_out, len(shared), only_before, only_after,
        tuple(scopes), tuple(changes),
    )  # fmt: skip


def _moved(a: float | None, b: float | None) -> bool:
    return (a is None) != (b is None) or (a is not None and b is not None and abs(a - b) > EPSILON)


def _changed(before: PageFigures, after: PageFigures) -> bool:
    return before.ok != after.ok or _moved(before.cer, after.cer) or _moved(before.teds, after.teds)
