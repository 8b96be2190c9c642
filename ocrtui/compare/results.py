"""The comparison's results as typed values: one name per figure, written to JSON only here.

- :class:`PhaseStats`: one speed phase (cold, warm, one throughput level) of one model;
  phases.jsonl's ``stats`` and :class:`~ocrtui.compare.events.PhaseDone`'s.
- :class:`DocumentStats`: one document (``document:NAME``) or the whole documents phase.
- :class:`SweepPoint`: one throughput level in the sweep.
- :class:`PhaseMeasures`: one phase's streamed timings and its server's counters
  (summary.json ``models.NAME.streaming`` / ``models.NAME.server``, per phase).
- :class:`Summary` (``run``: :class:`RunInfo`, ``models``: :class:`ModelSummary` with
  ``by_category``: :class:`CategoryStats`, ``documents``: :class:`DocumentSummary`,
  ``agreement``: :class:`Agreement`, ``worst_pages``: :class:`WorstPage`): summary.json.
- :class:`ServeSweepRecord`: which arms a serve sweep made (summary.json ``serve_sweep``).
- :class:`PassRates` (of :class:`PassCount`): tests passed per kind and per tag
  (page_tests.py), a page's in results.jsonl and a model's in summary.json.

Each has ``to_json()`` (the file's shape, like ``status.Snapshot.to_json``) and, where a file
is read back, ``from_json()`` that takes what older runs wrote (a missing key reads as
None/empty). Names differ from the files' in one figure only: images per second is
``images_per_s`` here; the files keep the keys they always had (``imgs_per_s`` in a phase,
``throughput_imgs_per_s`` / ``throughput_c5_imgs_per_s`` / ``saturation_imgs_per_s`` of a
model) and the sweep's points are written with ``vllm bench serve``'s names too
(``request_throughput``, ``median_e2el_ms``, ``p95_e2el_ms``, ``completed``, ``duration``).

A per-category metric is one field of :class:`CategoryStats` (written and read by its
field name, its heading in the field's metadata: ``CATEGORY_COLUMNS`` puts it in report.md's
and report.html's category tables) and its computation in ``report.category_stats``.

Stdlib only: report_html reads these from a run directory without the runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

# A JSON object as parsed: what from_json reads (values checked field by field).
JsonIn = Mapping[str, object]
JsonOut = dict[str, object]


def json_float(d: JsonIn, key: str) -> float | None:
    """``d[key]`` when it is a number, else None (as for the helpers below)."""
    v = d.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def json_int(d: JsonIn, key: str, default: int | None = None) -> int | None:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def json_str(d: JsonIn, key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) else None


def _obj(d: JsonIn, key: str) -> JsonIn:
    v = d.get(key)
    return v if isinstance(v, Mapping) else {}


def _list(d: JsonIn, key: str) -> list[object]:
    v = d.get(key)
    return list(v) if isinstance(v, list | tuple) else []


def _nonnull(out: JsonOut, **values: object) -> JsonOut:
    """``out`` plus the values that are not None (keys a phase wrote only when measured)."""
    out.update({k: v for k, v in values.items() if v is not None})
    return out


@dataclass(frozen=True, slots=True)
class PhaseStats:
    """One speed phase of one model: ``requests`` sent, one at a time or ``concurrency`` at
    a time (throughput levels only). Latencies are None when no request answered, and
    ``images_per_s`` too (nothing measured, not 0)."""

    requests: int
    ok: int
    failed: int
    first_error: str | None = None
    wall_s: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_mean_s: float | None = None
    concurrency: int | None = None  # None: cold and warm (one at a time)
    images_per_s: float | None = None

    def to_json(self) -> JsonOut:
        out: JsonOut = {
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "first_error": self.first_error,
            "wall_s": self.wall_s,
        }
        _nonnull(
            out,
            latency_p50_s=self.latency_p50_s,
            latency_p95_s=self.latency_p95_s,
            latency_mean_s=self.latency_mean_s,
        )
        if self.concurrency is not None:
            out["concurrency"] = self.concurrency
            out["imgs_per_s"] = self.images_per_s
        return out

    @classmethod
    def from_json(cls, d: JsonIn) -> PhaseStats:
        return cls(
            requests=json_int(d, "requests", 0) or 0,
            ok=json_int(d, "ok", 0) or 0,
            failed=json_int(d, "failed", 0) or 0,
            first_error=json_str(d, "first_error"),
            wall_s=json_float(d, "wall_s"),
            latency_p50_s=json_float(d, "latency_p50_s"),
            latency_p95_s=json_float(d, "latency_p95_s"),
            latency_mean_s=json_float(d, "latency_mean_s"),
            concurrency=json_int(d, "concurrency"),
            images_per_s=json_float(d, "imgs_per_s"),
        )


@dataclass(frozen=True, slots=True)
class DocumentStats:
    """Pages of one document (or of the whole documents phase) one arm read in this run;
    ``pages_per_s`` None when none was read, ``partial`` when an earlier run did the rest."""

    pages: int
    pages_ok: int
    pages_failed: int
    elapsed_s: float
    pages_per_s: float | None = None
    partial: bool = False

    def to_json(self) -> JsonOut:
        return asdict(self)

    @classmethod
    def from_json(cls, d: JsonIn) -> DocumentStats:
        ok = json_int(d, "pages_ok", 0) or 0
        return cls(
            pages=json_int(d, "pages", ok) or 0,
            pages_ok=ok,
            pages_failed=json_int(d, "pages_failed", 0) or 0,
            elapsed_s=json_float(d, "elapsed_s") or 0.0,
            pages_per_s=json_float(d, "pages_per_s"),
            partial=d.get("partial") is True,
        )


Stats = PhaseStats | DocumentStats


def stats_from_json(phase: str, d: JsonIn) -> Stats:
    """A phases.jsonl record's stats by its phase name (``document:NAME`` or a speed phase)."""
    return DocumentStats.from_json(d) if phase.startswith("document:") else PhaseStats.from_json(d)


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One throughput level: images/s and latency at ``concurrency``."""

    concurrency: int
    images_per_s: float | None
    p50_s: float | None
    p95_s: float | None
    completed: int | None = None
    failed: int | None = None
    duration_s: float | None = None

    @classmethod
    def of(cls, stats: PhaseStats, concurrency: int) -> SweepPoint:
        return cls(
            concurrency,
            stats.images_per_s,
            stats.latency_p50_s,
            stats.latency_p95_s,
            stats.ok,
            stats.failed,
            stats.wall_s,
        )

    def to_json(self) -> JsonOut:
        ms = {k: None if v is None else round(v * 1000, 2) for k, v in
              (("median_e2el_ms", self.p50_s), ("p95_e2el_ms", self.p95_s))}  # fmt: skip
        return {
            "concurrency": self.concurrency,
            "images_per_s": self.images_per_s,
            "p50": self.p50_s,
            "p95": self.p95_s,
            # vllm bench serve's result JSON names, for tools that read those
            "request_throughput": self.images_per_s,
            **ms,
            "completed": self.completed,
            "failed": self.failed,
            "duration": self.duration_s,
        }

    @classmethod
    def from_json(cls, d: JsonIn) -> SweepPoint | None:
        conc = json_int(d, "concurrency")
        if conc is None:
            return None
        return cls(
            conc,
            json_float(d, "images_per_s"),
            json_float(d, "p50"),
            json_float(d, "p95"),
            json_int(d, "completed"),
            json_int(d, "failed"),
            json_float(d, "duration"),
        )


@dataclass(frozen=True, slots=True)
class PassCount:
    """Tests passed out of tests run (page_tests.py), summable over pages."""

    passed: int = 0
    total: int = 0

    @property
    def rate(self) -> float | None:
        return self.passed / self.total if self.total else None

    def __add__(self, other: PassCount) -> PassCount:
        return PassCount(self.passed + other.passed, self.total + other.total)

    @classmethod
    def from_json(cls, d: JsonIn) -> PassCount:
        return cls(json_int(d, "passed", 0) or 0, json_int(d, "total", 0) or 0)


def _counts(d: JsonIn, key: str) -> dict[str, PassCount]:
    return {str(k): PassCount.from_json(v) for k, v in _obj(d, key).items()
            if isinstance(v, Mapping)}  # fmt: skip


@dataclass(frozen=True)
class PassRates:
    """Passed/total overall, per test kind and per tag; ``+`` sums pages or documents.
    results.jsonl's ``tests`` of a page and summary.json's ``tests`` of a model."""

    overall: PassCount = PassCount()
    by_kind: Mapping[str, PassCount] = field(default_factory=dict)
    by_tag: Mapping[str, PassCount] = field(default_factory=dict)

    def __add__(self, other: PassRates) -> PassRates:
        def merge(a: Mapping[str, PassCount], b: Mapping[str, PassCount]) -> dict[str, PassCount]:
            return {k: a.get(k, PassCount()) + b.get(k, PassCount()) for k in sorted({*a, *b})}

        return PassRates(
            self.overall + other.overall,
            merge(self.by_kind, other.by_kind),
            merge(self.by_tag, other.by_tag),
        )

    def to_json(self) -> JsonOut:
        return asdict(self)

    @classmethod
    def from_json(cls, d: JsonIn) -> PassRates:
        return cls(
            PassCount.from_json(_obj(d, "overall")),
            _counts(d, "by_kind"),
            _counts(d, "by_tag"),
        )


STREAM_METRICS = ("ttft", "tpot", "itl", "e2el")  # stream_stats.StreamSummary's, in order


@dataclass(frozen=True, slots=True)
class PhaseMeasures:
    """One phase of one vLLM arm as its streamed pages and its server measured it.

    ``streaming`` is ``stream_stats.StreamSummary.to_json`` (``vllm bench serve``'s keys, in
    ms: ``median_ttft_ms``, ``p99_itl_ms`` ...); ``server`` is
    ``vllm.metrics.PhaseCounters.to_json``. Both are kept in the JSON form their own
    modules define (like ``ModelSummary.arm``): this module is stdlib only. Empty: not
    measured (a non-streamed arm, a server whose ``/metrics`` did not answer, a phase a
    resumed run skipped).
    """

    streaming: Mapping[str, float] = field(default_factory=dict)
    server: JsonIn = field(default_factory=dict)

    def stream_ms(self, metric: str, stat: str) -> float | None:
        """``stat`` (``median``, ``p90``, ``p99``, ``mean``) of ``metric`` (STREAM_METRICS)."""
        return self.streaming.get(f"{stat}_{metric}_ms")

    def server_number(self, key: str, inner: str | None = None) -> float | None:
        """A number of ``server``: ``server[key]``, or ``server[key][inner]``."""
        if inner is None:
            return json_float(self.server, key)
        return json_float(_obj(self.server, key), inner)

    @property
    def spec_decode_acceptance(self) -> float | None:
        return self.server_number("spec_decode", "acceptance")

    @property
    def finished_by_reason(self) -> dict[str, float]:
        reasons = _obj(self.server, "finished_by_reason")
        return {str(k): v for k, v in reasons.items() if isinstance(v, int | float)}

    def to_json(self) -> JsonOut:
        return {"streaming": dict(self.streaming), "server": dict(self.server)}

    @classmethod
    def from_json(cls, d: JsonIn) -> PhaseMeasures:
        numbers = {str(k): float(v) for k, v in _obj(d, "streaming").items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip
        return cls(numbers, _obj(d, "server"))


def _metric(heading: str, shown: Format = "pct") -> float | None:
    """A CategoryStats field: None until computed; ``heading`` is its column in the
    category tables of report.md and report.html."""
    return field(default=None, metadata={"heading": heading, "shown": shown})


Format = Literal["pct", "count"]


@dataclass(frozen=True, slots=True)
class CategoryStats:
    """One category's accuracy for one arm. A new metric is one field here,
    ``name: float | None = _metric("Heading")`` (its JSON key is its name, its column in both
    reports' category tables follows), and its computation in ``report.category_stats``."""

    pages: int = field(default=0, metadata={"heading": "Pages", "shown": "count"})
    cer: float | None = _metric("CER")
    cer_lenient: float | None = _metric("CER lenient")
    critical_pass_rate: float | None = _metric("Critical")
    # Means over the category's pages that have a table / a display formula in their
    # reference (scoring.score_structure); None where none has.
    teds: float | None = _metric("TEDS")
    teds_s: float | None = _metric("TEDS-S")
    formula_ed: float | None = _metric("Formula ED")
    # Tests passed / run on the category's pages, critical strings included (page_tests.py).
    test_pass_rate: float | None = _metric("Tests")

    def to_json(self) -> JsonOut:
        return asdict(self)

    @classmethod
    def from_json(cls, d: JsonIn) -> CategoryStats:
        # Every field but ``pages`` is a rate (a number or None), read by its own name.
        rates = {f.name: json_float(d, f.name) for f in fields(cls) if f.name != "pages"}
        return cls(json_int(d, "pages", 0) or 0, **rates)


# The category tables' columns after Category and Model: (heading, CategoryStats field, how
# it is shown), one per field.
CATEGORY_COLUMNS: tuple[tuple[str, str, Format], ...] = tuple(
    (f.metadata["heading"], f.name, f.metadata["shown"]) for f in fields(CategoryStats)
)


ArmKind = Literal["vllm", "api"]
MODEL_KEYS = ("pages_ok", "pages_failed", "by_category")  # in every summary.json written


@dataclass(frozen=True)
class ModelSummary:
    """One arm's figures. ``throughput_images_per_s`` is measured at the run's concurrency
    (``throughput_concurrency``); summary.json also writes it as ``throughput_c5_imgs_per_s``
    when that concurrency is 5 (the seed's figure), else None there."""

    kind: ArmKind = "vllm"
    profile: str | None = None
    pages_ok: int = 0
    pages_failed: int = 0
    latency_cold_s: float | None = None
    latency_warm_p50_s: float | None = None
    latency_warm_p95_s: float | None = None
    throughput_images_per_s: float | None = None
    throughput_concurrency: int | None = None
    knee_concurrency: int | None = None
    saturation_images_per_s: float | None = None
    pages_per_s: float | None = None
    cer: float | None = None
    cer_lenient: float | None = None
    by_category: Mapping[str, CategoryStats] = field(default_factory=dict)
    critical_pass_rate: float | None = None
    flags: Mapping[str, int] = field(default_factory=dict)
    speed: Mapping[str, PhaseStats] = field(default_factory=dict)  # phase_key -> stats
    error: str | None = None
    # compare/arms.py's record, as written (the arm's own JSON contract)
    arm: JsonIn = field(default_factory=dict)
    sweep: tuple[SweepPoint, ...] = ()  # every throughput level, ascending
    # Tests per kind and per tag over every page, critical strings as ``present`` tests;
    # None when no page had a test (written only then).
    tests: PassRates | None = None
    # With --variants: every variant's (clean included) figures by category, from the
    # degraded copies of the same pages (variants.py); written only then. Every other
    # figure is the clean pages'.
    by_variant: Mapping[str, Mapping[str, CategoryStats]] = field(default_factory=dict)
    # phase_key (cold, warm, throughput@C) or "documents" -> what it measured
    measures: Mapping[str, PhaseMeasures] = field(default_factory=dict)

    def to_json(self) -> JsonOut:
        c5 = self.throughput_images_per_s if self.throughput_concurrency == 5 else None
        return {
            "kind": self.kind,
            "profile": self.profile,
            "pages_ok": self.pages_ok,
            "pages_failed": self.pages_failed,
            "latency_cold_s": self.latency_cold_s,
            "latency_warm_p50_s": self.latency_warm_p50_s,
            "latency_warm_p95_s": self.latency_warm_p95_s,
            "throughput_c5_imgs_per_s": c5,
            "throughput_imgs_per_s": self.throughput_images_per_s,
            "throughput_concurrency": self.throughput_concurrency,
            "knee_concurrency": self.knee_concurrency,
            "saturation_imgs_per_s": self.saturation_images_per_s,
            "pages_per_s": self.pages_per_s,
            "cer": self.cer,
            "cer_lenient": self.cer_lenient,
            "by_category": {c: v.to_json() for c, v in self.by_category.items()},
            "critical_pass_rate": self.critical_pass_rate,
            "flags": dict(self.flags),
            "speed": {p: st.to_json() for p, st in self.speed.items()},
            "error": self.error,
            "arm": dict(self.arm),
            "streaming": {p: dict(v.streaming) for p, v in self.measures.items() if v.streaming},
            "server": {p: dict(v.server) for p, v in self.measures.items() if v.server},
            **({} if self.tests is None else {"tests": self.tests.to_json()}),
            **self._variants_json(),
        }

    def _variants_json(self) -> JsonOut:
        if not self.by_variant:
            return {}
        return {
            "by_variant": {
                v: {c: s.to_json() for c, s in cats.items()} for v, cats in self.by_variant.items()
            }
        }

    @classmethod
    def from_json(cls, d: JsonIn, sweep: list[object]) -> ModelSummary:
        """ValueError when a field every summary.json has written is missing."""
        missing = [k for k in MODEL_KEYS if k not in d]
        if missing:
            raise ValueError(f"a model without {', '.join(map(repr, missing))}")
        # Summaries from before the sweep named the run's throughput only by its c5 key.
        rate = json_float(d, "throughput_imgs_per_s")
        if rate is None:
            rate = json_float(d, "throughput_c5_imgs_per_s")
        flags = _obj(d, "flags")
        streaming, server = _obj(d, "streaming"), _obj(d, "server")
        measures = {
            str(p): PhaseMeasures.from_json(
                {"streaming": _obj(streaming, p), "server": _obj(server, p)}
            )
            for p in dict.fromkeys([*streaming, *server])
        }
        return cls(
            kind="api" if d.get("kind") == "api" else "vllm",
            profile=json_str(d, "profile"),
            pages_ok=json_int(d, "pages_ok", 0) or 0,
            pages_failed=json_int(d, "pages_failed", 0) or 0,
            latency_cold_s=json_float(d, "latency_cold_s"),
            latency_warm_p50_s=json_float(d, "latency_warm_p50_s"),
            latency_warm_p95_s=json_float(d, "latency_warm_p95_s"),
            throughput_images_per_s=rate,
            throughput_concurrency=json_int(d, "throughput_concurrency"),
            knee_concurrency=json_int(d, "knee_concurrency"),
            saturation_images_per_s=json_float(d, "saturation_imgs_per_s"),
            pages_per_s=json_float(d, "pages_per_s"),
            cer=json_float(d, "cer"),
            cer_lenient=json_float(d, "cer_lenient"),
            by_category={
                str(c): CategoryStats.from_json(v)
                for c, v in _obj(d, "by_category").items()
                if isinstance(v, Mapping)
            },
            critical_pass_rate=json_float(d, "critical_pass_rate"),
            flags={str(k): v for k, v in flags.items() if isinstance(v, int)},
            speed={
                str(p): PhaseStats.from_json(st)
                for p, st in _obj(d, "speed").items()
                if isinstance(st, Mapping)
            },
            error=json_str(d, "error"),
            arm=_obj(d, "arm"),
            sweep=tuple(
                pt
                for p in sweep
                if isinstance(p, Mapping) and (pt := SweepPoint.from_json(p)) is not None
            ),
            tests=PassRates.from_json(t) if (t := _obj(d, "tests")) else None,
            by_variant={
                str(v): {
                    str(c): CategoryStats.from_json(s)
                    for c, s in cats.items()
                    if isinstance(s, Mapping)
                }
                for v, cats in _obj(d, "by_variant").items()
                if isinstance(cats, Mapping)
            },
            measures=measures,
        )


@dataclass(frozen=True)
class DocumentSummary:
    path: str
    category: str
    pages: tuple[int, ...]
    has_reference: bool
    error: str | None  # None: it opened and ran
    pages_per_s: Mapping[str, float | None]  # per arm

    def to_json(self) -> JsonOut:
        out = asdict(self)
        out["pages"] = list(self.pages)
        return out

    @classmethod
    def from_json(cls, d: JsonIn) -> DocumentSummary:
        speeds = _obj(d, "pages_per_s")
        return cls(
            path=json_str(d, "path") or "",
            category=json_str(d, "category") or "other",
            pages=tuple(p for p in _list(d, "pages") if isinstance(p, int)),
            has_reference=d.get("has_reference") is True,
            error=json_str(d, "error"),
            pages_per_s={str(m): json_float(speeds, m) for m in speeds},
        )


@dataclass(frozen=True, slots=True)
class Agreement:
    """CER between the first two arms' texts on the pages that have no reference."""

    models: tuple[str, str]
    pages: int
    cer: float | None

    def to_json(self) -> JsonOut:
        return {"models": list(self.models), "pages": self.pages, "cer": self.cer}

    @classmethod
    def from_json(cls, d: JsonIn) -> Agreement | None:
        models = [str(m) for m in _list(d, "models")]
        if len(models) != 2:
            return None
        return cls((models[0], models[1]), json_int(d, "pages", 0) or 0, json_float(d, "cer"))


@dataclass(frozen=True, slots=True)
class WorstPage:
    """One of the worst pages (ranking.py's order): the arm that did worst on it, and the
    reference-vs-output line diff (report.with_diffs; empty before it)."""

    doc: str
    page: int
    model: str
    cer: float | None
    flags: tuple[str, ...] = ()
    diff: tuple[str, ...] = ()

    def to_json(self) -> JsonOut:
        out: JsonOut = {
            "doc": self.doc,
            "page": self.page,
            "model": self.model,
            "cer": self.cer,
            "flags": list(self.flags),
        }
        if self.diff:
            out["diff"] = list(self.diff)
        return out

    @classmethod
    def from_json(cls, d: JsonIn) -> WorstPage | None:
        doc, page, model = json_str(d, "doc"), json_int(d, "page"), json_str(d, "model")
        if doc is None or page is None or model is None:
            return None
        return cls(
            doc,
            page,
            model,
            json_float(d, "cer"),
            tuple(str(f) for f in _list(d, "flags")),
            tuple(str(x) for x in _list(d, "diff")),
        )


@dataclass(frozen=True)
class RunInfo:
    dir: str
    models: tuple[str, ...]
    schedule: str | None = None
    concurrency: int | None = None
    warm_runs: int | None = None
    throughput_requests: int | None = None
    throughput_concurrencies: tuple[int, ...] = ()
    knee_p95_s: float | None = None
    image_format: str | None = None

    def to_json(self) -> JsonOut:
        out = asdict(self)
        out["models"] = list(self.models)
        out["throughput_concurrencies"] = list(self.throughput_concurrencies)
        return out

    @classmethod
    def from_json(cls, d: JsonIn, models: tuple[str, ...]) -> RunInfo:
        return cls(
            dir=json_str(d, "dir") or "",
            models=tuple(str(m) for m in _list(d, "models")) or models,
            schedule=json_str(d, "schedule"),
            concurrency=json_int(d, "concurrency"),
            warm_runs=json_int(d, "warm_runs"),
            throughput_requests=json_int(d, "throughput_requests"),
            throughput_concurrencies=tuple(
                c for c in _list(d, "throughput_concurrencies") if isinstance(c, int)
            ),
            knee_p95_s=json_float(d, "knee_p95_s"),
            image_format=json_str(d, "image_format"),
        )


@dataclass(frozen=True)
class ServeSweepRecord:
    """A serve sweep's arms (compare/serve_sweep.py): the model, the sweep file, and per arm
    (file order) the settings its flag set changed; summary.json's ``serve_sweep``."""

    model: str
    file: str
    arms: tuple[tuple[str, Mapping[str, object]], ...]

    def to_json(self) -> JsonOut:
        return {
            "model": self.model,
            "file": self.file,
            "arms": [{"name": n, "changes": _plain(dict(c))} for n, c in self.arms],
        }

    @classmethod
    def from_json(cls, d: JsonIn) -> ServeSweepRecord | None:
        model = json_str(d, "model")
        if model is None:
            return None
        arms = tuple(
            (name, dict(_obj(a, "changes")))
            for a in _list(d, "arms")
            if isinstance(a, Mapping) and (name := json_str(a, "name")) is not None
        )
        return cls(model, json_str(d, "file") or "", arms)


def _plain(d: Mapping[str, object]) -> JsonOut:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class Summary:
    """summary.json: the run, each arm, each document, the agreement, the worst pages."""

    run: RunInfo
    models: Mapping[str, ModelSummary]
    documents: Mapping[str, DocumentSummary]
    agreement: Agreement | None
    worst_pages: tuple[WorstPage, ...]
    serve_sweep: ServeSweepRecord | None = None  # the arms are a serve sweep's flag sets

    @property
    def swept(self) -> bool:
        """Whether more than one throughput level ran (summary.json then has ``sweep``)."""
        return len(self.run.throughput_concurrencies) > 1 or any(
            len(m.sweep) > 1 for m in self.models.values()
        )

    def to_json(self) -> JsonOut:
        out: JsonOut = {
            "run": self.run.to_json(),
            "models": {n: m.to_json() for n, m in self.models.items()},
            "documents": {n: d.to_json() for n, d in self.documents.items()},
            "agreement": None if self.agreement is None else self.agreement.to_json(),
            "worst_pages": [w.to_json() for w in self.worst_pages],
        }
        if self.swept:
            out["sweep"] = {n: [p.to_json() for p in m.sweep] for n, m in self.models.items()}
        if self.serve_sweep is not None:
            out["serve_sweep"] = self.serve_sweep.to_json()
        return out

    @classmethod
    def from_json(cls, d: JsonIn) -> Summary:
        """summary.json as any version wrote it; ValueError when it is not one."""
        models_in = d.get("models")
        if not isinstance(models_in, Mapping):
            raise ValueError("no 'models' object")
        sweep = _obj(d, "sweep")
        models = {
            str(n): ModelSummary.from_json(
                m,
                # the sweep under "sweep", or (older summaries) in the model itself
                _list(sweep, str(n)) or _list(m, "sweep"),
            )
            for n, m in models_in.items()
            if isinstance(m, Mapping)
        }
        agreement = _obj(d, "agreement")
        serve_sweep = _obj(d, "serve_sweep")
        return cls(
            run=RunInfo.from_json(_obj(d, "run"), tuple(models)),
            models=models,
            documents={
                str(n): DocumentSummary.from_json(v)
                for n, v in _obj(d, "documents").items()
                if isinstance(v, Mapping)
            },
            agreement=Agreement.from_json(agreement) if agreement else None,
            worst_pages=tuple(
                w
                for x in _list(d, "worst_pages")
                if isinstance(x, Mapping) and (w := WorstPage.from_json(x)) is not None
            ),
            serve_sweep=ServeSweepRecord.from_json(serve_sweep) if serve_sweep else None,
        )

    @property
    def exit_code(self) -> int:
        """0 all done; 1 any failed page or document."""
        failed_docs = any(d.error for d in self.documents.values())
        failed_pages = any(m.pages_failed for m in self.models.values())
        return 1 if failed_docs or failed_pages else 0
