"""The run directory: results appended one line per page per model, flushed and fsynced as
each arrives, so a killed run loses nothing it finished.

    run.json        what was asked (RunRecord: inputs, models, schedule); read by --resume
    results.jsonl   one line per page per model (contract fields, see RESULT_FIELDS)
    phases.jsonl    one line per finished speed phase per model (cold, warm, throughput),
                    with its measures (streamed timings, server counters)
    summary.json    written at the end
    report.md       written at the end

Writes happen on one dedicated thread, in order, never on the event loop. On resume the
files are compacted: a torn last line (kill -9 mid-write) and failed pages are dropped, so
failed pages run again and the file keeps exactly one line per page per model.

:func:`read_result_lines` is the one reader of results.jsonl's lines (the resume, the
read-back here, report.html). Memory stays bounded over long runs: only a compact
:class:`PageResult` per page per model is kept (without its text); texts are read back from
results.jsonl, streaming, when needed (the resume rewrite, resumed pages' events, the worst
pages' diffs).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, BinaryIO

from ocrtui.compare.results import (
    JsonIn,
    JsonOut,
    PassRates,
    PhaseMeasures,
    Stats,
    json_float,
    json_int,
    json_str,
    stats_from_json,
)
from ocrtui.errors import InputError

RESULTS = "results.jsonl"
PHASES = "phases.jsonl"
RUN = "run.json"
SUMMARY = "summary.json"
REPORT = "report.md"


@dataclass(frozen=True, slots=True)
class PageResult:
    """One page's result for one model: a results.jsonl line, and what PageDone/PageFailed
    carry. ``text`` is None where the text is not held (the store's compact record, a
    replayed history's older pages): results.jsonl has it."""

    doc: str
    page: int
    model: str
    ok: bool
    error: str | None
    latency_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    text: str | None
    cer: float | None
    category: str
    flags: tuple[str, ...] = ()
    # Before sending (compare/page_fit.py): the prompt tokens predicted from the model's
    # processor, beside the server's prompt_tokens; "WxH -> WxH" when resized to fit.
    predicted_prompt_tokens: int | None = None
    resized: str | None = None
    # What CER cannot see (scoring.score_structure): TEDS and TEDS-S of the page's tables,
    # the normalised edit distance of its display formulas (None where the reference has
    # none) and its tests' pass counts per kind and per tag (None: the page has none).
    teds: float | None = None
    teds_s: float | None = None
    formula_ed: float | None = None
    tests: PassRates | None = None
    # A streamed request's timings (client.StreamTimings, named as ``vllm bench serve``
    # names them): time to first token, per output token after it, end to end, the usage's
    # output tokens, and this page's inter-token gaps at p50/p90/p99 (stream_stats.percentile;
    # the gaps themselves are summarised per phase in summary.json). None: not streamed.
    ttft_s: float | None = None
    tpot_s: float | None = None
    e2el_s: float | None = None
    output_tokens: int | None = None
    itl_p50_s: float | None = None
    itl_p90_s: float | None = None
    itl_p99_s: float | None = None

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.doc, self.page, self.model)

    def without_text(self) -> PageResult:
        """What the run keeps in memory of a result: everything but the text."""
        return self if self.text is None else replace(self, text=None)

    @classmethod
    def from_json(cls, d: JsonIn) -> PageResult:
        """A stored line back as a result; TypeError when its key fields are not usable (a
        field of the wrong type reads as None)."""
        doc, page, model = d.get("doc"), d.get("page"), d.get("model")
        if not (isinstance(doc, str) and isinstance(page, int) and isinstance(model, str)):
            raise TypeError("result line without doc/page/model")
        flags = d.get("flags")
        return cls(
            doc=doc,
            page=page,
            model=model,
            ok=d.get("ok") is True,
            error=json_str(d, "error"),
            latency_s=json_float(d, "latency_s"),
            prompt_tokens=json_int(d, "prompt_tokens"),
            completion_tokens=json_int(d, "completion_tokens"),
            finish_reason=json_str(d, "finish_reason"),
            text=json_str(d, "text") or "",
            cer=json_float(d, "cer"),
            category=json_str(d, "category") or "other",
            flags=tuple(str(f) for f in flags) if isinstance(flags, list) else (),
            predicted_prompt_tokens=json_int(d, "predicted_prompt_tokens"),
            resized=json_str(d, "resized"),
            teds=json_float(d, "teds"),
            teds_s=json_float(d, "teds_s"),
            formula_ed=json_float(d, "formula_ed"),
            tests=PassRates.from_json(t) if isinstance(t := d.get("tests"), Mapping) else None,
            ttft_s=json_float(d, "ttft_s"),
            tpot_s=json_float(d, "tpot_s"),
            e2el_s=json_float(d, "e2el_s"),
            output_tokens=json_int(d, "output_tokens"),
            itl_p50_s=json_float(d, "itl_p50_s"),
            itl_p90_s=json_float(d, "itl_p90_s"),
            itl_p99_s=json_float(d, "itl_p99_s"),
        )


RESULT_FIELDS = tuple(PageResult.__dataclass_fields__)


@dataclass(frozen=True)
class RunRecord:
    """run.json: what a run was asked (launch.resolve writes it; --resume and report.html
    read it). Never the password. ``docs`` relative to ``cwd``."""

    docs: tuple[str, ...] = ()
    cwd: str | None = None
    suite: str | None = None
    pages: str | None = None  # the page spec as given
    reference: str | None = None
    models: tuple[str, ...] = ()
    concurrency: int | None = None
    schedule: str | None = None
    sweep: bool = False
    # A benchmark suite's tests ocrtui cannot run (documents.Suite.skipped): reason -> count.
    suite_skipped: Mapping[str, int] = field(default_factory=dict)
    variants: tuple[str, ...] = ()  # --variants as given (variants.py); () clean only
    created: str | None = None
    serve_sweep: str | None = None  # the serve sweep file (absolute); --resume reads it again

    def to_json(self) -> JsonOut:
        out = asdict(self)
        out["docs"], out["models"] = list(self.docs), list(self.models)
        out["suite_skipped"] = dict(self.suite_skipped)
        out["variants"] = list(self.variants)
        return out

    @classmethod
    def from_json(cls, d: JsonIn) -> RunRecord:
        docs, models = d.get("docs"), d.get("models")
        return cls(
            docs=tuple(str(x) for x in docs) if isinstance(docs, list) else (),
            cwd=json_str(d, "cwd"),
            suite=json_str(d, "suite"),
            pages=json_str(d, "pages"),
            reference=json_str(d, "reference"),
            models=tuple(str(x) for x in models) if isinstance(models, list) else (),
            concurrency=json_int(d, "concurrency"),
            schedule=json_str(d, "schedule"),
            sweep=d.get("sweep") is True,
            suite_skipped={str(k): v for k, v in skipped.items() if isinstance(v, int)}
            if isinstance(skipped := d.get("suite_skipped"), dict)
            else {},
            variants=tuple(str(x) for x in v) if isinstance(v := d.get("variants"), list) else (),
            created=json_str(d, "created"),
            serve_sweep=json_str(d, "serve_sweep"),
        )


@dataclass(frozen=True)
class PhaseRecord:
    """A phases.jsonl line: speed phases carry PhaseStats, documents DocumentStats; a
    measured speed phase also its streamed timings and server counters (``measures``, kept
    so that a resumed run reports the phases it skips)."""

    model: str
    phase: str  # cold | warm | throughput@C (events.phase_key) | document:NAME
    stats: Stats
    measures: PhaseMeasures | None = None

    def to_json(self) -> JsonOut:
        out: JsonOut = {"model": self.model, "phase": self.phase, "stats": self.stats.to_json()}
        if self.measures is not None:
            out["measures"] = self.measures.to_json()
        return out


def parse_line(line: bytes) -> JsonIn | None:
    """One parsed line; None for an unparseable one (the torn tail of a killed writer)."""
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _read_jsonl(path: Path) -> list[JsonIn]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    return [obj for line in raw.split(b"\n") if (obj := parse_line(line)) is not None]


def read_result_lines(path: Path, *, text: bool = True) -> Iterator[tuple[int, PageResult]]:
    """(byte offset, result) of each line of results.jsonl, read line by line (never whole),
    skipping lines that are not results; ``text=False`` drops each text as it is read."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        offset = 0
        for line in f:
            at, offset = offset, offset + len(line)
            d = parse_line(line)
            if d is None:
                continue
            try:
                r = PageResult.from_json(d)
            except TypeError:
                continue
            yield at, r if text else r.without_text()


def text_at(f: IO[bytes], offset: int) -> str:
    """The text of the results.jsonl line at ``offset`` (from :func:`read_result_lines`)."""
    f.seek(offset)
    d = parse_line(f.readline())
    return (json_str(d, "text") if d is not None else None) or ""


def _stored_results(path: Path) -> Iterator[PageResult]:
    return (r for _offset, r in read_result_lines(path))


def _read_batch(
    path: Path, offset: int, keys: frozenset[tuple[str, int, str]], max_bytes: int
) -> tuple[list[PageResult], int]:
    """Ok results for ``keys`` from about ``max_bytes`` of lines at ``offset``; new offset."""
    out: list[PageResult] = []
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return out, offset
    with f:
        f.seek(offset)
        while f.tell() - offset < max_bytes:
            line = f.readline()
            if not line.endswith(b"\n"):  # end of file, or a line still being written
                break
            d = parse_line(line)
            if d is None or (d.get("doc"), d.get("page"), d.get("model")) not in keys:
                continue
            try:
                r = PageResult.from_json(d)
            except TypeError:
                continue
            if r.ok:
                out.append(r)
        return out, f.tell()


def _compact_results(path: Path) -> dict[tuple[str, int, str], PageResult]:
    """Rewrite results.jsonl keeping the last ok line of each page per model (at the place
    of its first ok line) and return their records; two streaming passes, one line at a
    time in memory (plus the rare page stored twice)."""
    first: dict[tuple[str, int, str], int] = {}
    last: dict[tuple[str, int, str], int] = {}
    for i, r in enumerate(_stored_results(path)):
        if r.ok:
            first.setdefault(r.key, i)
            last[r.key] = i
    moved = {last[k]: k for k, i in first.items() if last[k] != i}
    later: dict[tuple[str, int, str], PageResult] = {}
    if moved:
        later = {r.key: r for i, r in enumerate(_stored_results(path)) if i in moved}
    at_first = {i: k for k, i in first.items()}
    records: dict[tuple[str, int, str], PageResult] = {}
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as out:
        for i, r in enumerate(_stored_results(path)):
            key = at_first.get(i)
            if key is None:
                continue
            r = later.get(key, r)
            records[key] = r.without_text()
            out.write(_line(asdict(r)))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return records


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# A path that is not UTF-8 holds surrogate escapes; written as "\udcXX" they stay valid
# UTF-8 and, inside a JSON string, read back as the very same path on --resume.
_UNENCODABLE = "backslashreplace"


def _line(obj: Mapping[str, object]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8", _UNENCODABLE)


def claim_new_run_dir(wanted: Path) -> Path:
    """``wanted``, else ``wanted-2``, ``wanted-3``, ...: the first that did not exist, created
    now (atomically, so two runs named from the same second never share a directory)."""
    try:
        wanted.parent.mkdir(parents=True, exist_ok=True)
        for n in itertools.count(1):
            candidate = wanted if n == 1 else wanted.with_name(f"{wanted.name}-{n}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return candidate
    except OSError as exc:
        raise InputError(f"{wanted}: cannot create run directory: {exc.strerror}") from None
    raise AssertionError("unreachable")  # itertools.count never ends


class RunStore:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocrtui-store")
        self._files: dict[str, BinaryIO] = {}
        self.results: dict[tuple[str, int, str], PageResult] = {}
        self.phases: dict[tuple[str, str], PhaseRecord] = {}

    @classmethod
    def create(cls, run_dir: Path, run_info: RunRecord) -> RunStore:
        if (run_dir / RESULTS).exists() or (run_dir / RUN).exists():
            raise InputError(f"{run_dir}: already holds a run; continue it with --resume {run_dir}")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{run_dir}: cannot create run directory: {exc.strerror}") from None
        info = json.dumps(run_info.to_json(), ensure_ascii=False, indent=2)
        info_bytes = info.encode("utf-8", _UNENCODABLE)
        _write_atomic(run_dir / RUN, info_bytes)
        return cls(run_dir)

    @classmethod
    def resume(cls, run_dir: Path) -> RunStore:
        """Open an existing run, keeping finished pages and phases and dropping the rest.
        Blocking (reads and rewrites results.jsonl): call it off the event loop."""
        if not (run_dir / RUN).is_file():
            raise InputError(f"{run_dir}: not a run directory (no {RUN})")
        store = cls(run_dir)
        store.results = _compact_results(run_dir / RESULTS)
        for d in _read_jsonl(run_dir / PHASES):
            model, stats = d.get("model"), d.get("stats")
            if isinstance(model, str) and isinstance(stats, Mapping):
                phase = str(d.get("phase"))
                m = d.get("measures")
                measures = PhaseMeasures.from_json(m) if isinstance(m, Mapping) else None
                rec = PhaseRecord(model, phase, stats_from_json(phase, stats), measures)
                store.phases[(rec.model, rec.phase)] = rec
        _write_atomic(run_dir / PHASES, b"".join(_line(p.to_json()) for p in store.phases.values()))
        return store

    @staticmethod
    def resume_info(run_dir: Path) -> RunRecord:
        """What the run being resumed was asked to do (its run.json)."""
        try:
            data = json.loads((run_dir / RUN).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{run_dir}: not a run directory (no {RUN})") from None
        except (OSError, ValueError) as exc:
            raise InputError(f"{run_dir}/{RUN}: unreadable: {exc}") from None
        if not isinstance(data, dict):
            raise InputError(f"{run_dir}/{RUN}: not a JSON object")
        return RunRecord.from_json(data)

    def is_done(self, doc: str, page: int, model: str) -> bool:
        return (doc, page, model) in self.results

    async def add_result(self, result: PageResult) -> None:
        self.results[result.key] = result.without_text()
        await self._append(RESULTS, _line(asdict(result)))

    async def read_results(
        self, keys: set[tuple[str, int, str]], batch_bytes: int = 1 << 20
    ) -> AsyncIterator[PageResult]:
        """Stored ok results for ``keys``, in file order, read back from results.jsonl a
        batch at a time on the store's thread (after the writes queued before it)."""
        wanted = frozenset(keys)
        if not wanted:
            return
        loop = asyncio.get_running_loop()
        offset = 0
        while True:
            batch, end = await loop.run_in_executor(
                self._io, _read_batch, self.dir / RESULTS, offset, wanted, batch_bytes
            )
            for r in batch:
                yield r
            if end == offset:
                return
            offset = end

    async def add_phase(self, record: PhaseRecord) -> None:
        self.phases[(record.model, record.phase)] = record
        await self._append(PHASES, _line(record.to_json()))

    async def _append(self, name: str, line: bytes) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._io, self._append_sync, name, line)

    def _append_sync(self, name: str, line: bytes) -> None:
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = (self.dir / name).open("ab")
        f.write(line)
        f.flush()
        os.fsync(f.fileno())

    async def write_text(self, name: str, text: str) -> None:
        loop = asyncio.get_running_loop()
        data = text.encode("utf-8", _UNENCODABLE)
        await loop.run_in_executor(self._io, _write_atomic, self.dir / name, data)

    def close(self) -> None:
        self._io.submit(self._close_files).result()
        self._io.shutdown(wait=True)

    def _close_files(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
