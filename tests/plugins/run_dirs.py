"""Synthetic run directories, written file by file as docs/compare.md describes them
(run.json through RunStore, results.jsonl lines of PageResult, summary.json with the
contract fields, pages/ through page_files), for the report tests and
bench/report_html.py. Scores come from the project's scoring code.

Fixture: ``make_run_dir(pages, **kw) -> Path`` (a fresh directory under tmp_path).
"""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from ocrtui.compare import page_files
from ocrtui.compare.profiles import TARGETS
from ocrtui.compare.render import RenderedPage
from ocrtui.compare.scoring import EditCount, corpus_cer, edit_count, flags_for
from ocrtui.compare.store import RESULTS, SUMMARY, PageResult, RunRecord, RunStore
from ocrtui.published import Profile

MODELS: dict[str, Profile] = {"glm-ocr": "glm-ocr", "lighton-ocr": "lighton-ocr"}  # name -> profile


@dataclass(frozen=True)
class SynthPage:
    doc: str
    page: int
    texts: Mapping[str, str | None]  # model -> its text; None: the model failed the page
    reference: str | None = None
    category: str = "other"


def page_image(width: int = 620, height: int = 877, label: str = "page") -> RenderedPage:
    """A JPEG page: a few dark text-like bars on white."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    draw.text((40, 30), label, fill="black")
    for i in range(12):
        y = 80 + i * (height - 120) // 12
        draw.rectangle((40, y, width - 40 - (i * 37) % 200, y + 10), fill=(40, 40, 40))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return RenderedPage(buf.getvalue(), "image/jpeg", width, height)


def write_run_dir(
    run_dir: Path,
    pages: Sequence[SynthPage],
    *,
    models: Mapping[str, Profile] = MODELS,
    image: RenderedPage | None = None,
    keep_references: bool = True,
    doc_paths: Mapping[str, Path] | None = None,
    info: Mapping[str, Any] | None = None,
    sweep: Mapping[str, list[dict[str, Any]]] | None = None,
    concurrency: int = 5,
) -> Path:
    """A finished run of ``pages``; with ``image`` every page keeps it for each model's
    render target."""
    names = list(models)
    record = {"docs": [], "models": names, "concurrency": concurrency,
              "created": "2026-12-01T12:00:00+0000", **(info or {})}  # fmt: skip
    RunStore.create(run_dir, RunRecord.from_json(record))
    strict: dict[str, list[EditCount]] = defaultdict(list)
    lenient: dict[str, list[EditCount]] = defaultdict(list)
    by_cat: dict[str, dict[str, list[EditCount]]] = defaultdict(lambda: defaultdict(list))
    by_cat_l: dict[str, dict[str, list[EditCount]]] = defaultdict(lambda: defaultdict(list))
    flags: dict[str, Counter[str]] = defaultdict(Counter)
    ok_count: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    docs: dict[str, dict[str, Any]] = {}
    refs: dict[str, dict[int, str]] = defaultdict(dict)
    agree: list[EditCount] = []
    with (run_dir / RESULTS).open("w", encoding="utf-8") as f:
        for p in pages:
            d = docs.setdefault(p.doc, {"category": p.category, "pages": []})
            d["pages"].append(p.page)
            if p.reference is not None:
                refs[p.doc][p.page] = p.reference
            for i, m in enumerate(names):
                text = p.texts.get(m)
                ok = text is not None
                page_cer = None
                if ok and p.reference is not None:
                    sc = edit_count(text or "", p.reference)
                    page_cer = round(sc.cer, 6)
                    strict[m].append(sc)
                    lenient[m].append(edit_count(text or "", p.reference, lenient=True))
                    by_cat[m][p.category].append(sc)
                    by_cat_l[m][p.category].append(lenient[m][-1])
                fl = flags_for(text or "", "stop", p.reference) if ok else []
                flags[m].update(fl)
                (ok_count if ok else failed)[m] += 1
                r = PageResult(
                    p.doc, p.page, m, ok, None if ok else "HTTP 500: engine died",
                    round(0.4 + 0.3 * i + 0.01 * (p.page % 50), 4) if ok else None,
                    900, len(text or ""), "stop" if ok else None, text or "", page_cer,
                    p.category, tuple(fl),
                )  # fmt: skip
                f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
                if image is not None:
                    target = TARGETS[models[m]]
                    page_files.save_page_image(run_dir, p.doc, p.page, target, image)
            a, b = (p.texts.get(n) for n in names[:2])
            if p.reference is None and a is not None and b is not None:
                agree.append(edit_count(b, a))
    if keep_references:
        for doc, texts in refs.items():
            page_files.save_references(run_dir, doc, texts)
    summary = {
        "run": {
            "dir": str(run_dir),
            "models": names,
            "schedule": "sequential",
            "concurrency": concurrency,
            "warm_runs": 10,
            "throughput_requests": 20,
            "image_format": "jpeg",
        },
        "models": {
            m: {
                "profile": models[m],
                "pages_ok": ok_count[m],
                "pages_failed": failed[m],
                "latency_cold_s": 2.5 + i,
                "latency_warm_p50_s": 0.5 + 0.3 * i,
                "latency_warm_p95_s": 0.7 + 0.3 * i,
                "throughput_c5_imgs_per_s": 6.0 - 2 * i,
                "pages_per_s": 2.0 - 0.5 * i,
                "cer": _r(corpus_cer(strict[m])),
                "cer_lenient": _r(corpus_cer(lenient[m])),
                "by_category": {
                    c: {
                        "pages": len(v),
                        "cer": _r(corpus_cer(v)),
                        "cer_lenient": _r(corpus_cer(by_cat_l[m][c])),
                        "critical_pass_rate": None,
                    }
                    for c, v in sorted(by_cat[m].items())
                },
                "critical_pass_rate": None,
                "flags": dict(sorted(flags[m].items())),
                "speed": {
                    "warm": {"latency_p50_s": 0.5 + 0.3 * i, "latency_p95_s": 0.7 + 0.3 * i},
                    "throughput": {"imgs_per_s": 6.0 - 2 * i, "concurrency": concurrency},
                },
            }
            for i, m in enumerate(names)
        },
        "documents": {
            name: {
                "path": str((doc_paths or {}).get(name, Path("/nonexistent") / name)),
                "category": d["category"],
                "pages": d["pages"],
                "has_reference": bool(refs.get(name)),
                "error": None,
                "pages_per_s": {m: 2.0 - 0.5 * i for i, m in enumerate(names)},
            }
            for name, d in docs.items()
        },
        "agreement": {"models": names[:2], "pages": len(agree), "cer": _r(corpus_cer(agree))},
        "worst_pages": [],
    }
    if sweep is not None:
        summary["sweep"] = dict(sweep)
    (run_dir / SUMMARY).write_text(json.dumps(summary, ensure_ascii=False), encoding="utf-8")
    return run_dir


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


@pytest.fixture
def make_run_dir(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1_000_000))

    def make(pages: Sequence[SynthPage], **kw: Any) -> Path:
        return write_run_dir(tmp_path / f"run{next(counter)}", pages, **kw)

    return make
