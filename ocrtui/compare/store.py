"""The run directory: results appended one line per page per model, flushed and fsynced as
each arrives, so a killed run loses nothing it finished.

    run.json        what was asked (inputs, models, schedule); read by --resume
    results.jsonl   one line per page per model (contract fields, see RESULT_FIELDS)
    phases.jsonl    one line per finished speed phase per model (cold, warm, throughput)
    summary.json    written at the end
    report.md       written at the end

Writes happen on one dedicated thread, in order, never on the event loop. On resume the
files are compacted: a torn last line (kill -9 mid-write) and failed pages are dropped, so
failed pages run again and the file keeps exactly one line per page per model.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ocrtui.errors import InputError

RESULTS = "results.jsonl"
PHASES = "phases.jsonl"
RUN = "run.json"
SUMMARY = "summary.json"
REPORT = "report.md"


@dataclass(frozen=True)
class PageResult:
    doc: str
    page: int
    model: str
    ok: bool
    error: str | None
    latency_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    text: str
    cer: float | None
    category: str
    flags: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.doc, self.page, self.model)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PageResult:
        """A stored line back as a result; TypeError when its key fields are not usable."""
        doc, page, model, ok = d.get("doc"), d.get("page"), d.get("model"), d.get("ok")
        if not (isinstance(doc, str) and isinstance(page, int) and isinstance(model, str)):
            raise TypeError("result line without doc/page/model")
        return cls(
            doc=doc,
            page=page,
            model=model,
            ok=ok is True,
            error=d.get("error"),
            latency_s=d.get("latency_s"),
            prompt_tokens=d.get("prompt_tokens"),
            completion_tokens=d.get("completion_tokens"),
            finish_reason=d.get("finish_reason"),
            text=str(d.get("text") or ""),
            cer=d.get("cer"),
            category=str(d.get("category") or "other"),
            flags=list(d.get("flags") or []),
        )


RESULT_FIELDS = tuple(PageResult.__dataclass_fields__)


@dataclass(frozen=True)
class PhaseRecord:
    model: str
    phase: str  # cold | warm | throughput
    stats: dict[str, Any]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Parsed lines; an unparseable line (the torn tail of a killed writer) is skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")


class RunStore:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocrtui-store")
        self._files: dict[str, Any] = {}
        self.results: dict[tuple[str, int, str], PageResult] = {}
        self.phases: dict[tuple[str, str], PhaseRecord] = {}

    @classmethod
    def create(cls, run_dir: Path, run_info: dict[str, Any]) -> RunStore:
        if (run_dir / RESULTS).exists() or (run_dir / RUN).exists():
            raise InputError(f"{run_dir}: already holds a run; continue it with --resume {run_dir}")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{run_dir}: cannot create run directory: {exc.strerror}") from None
        _write_atomic(run_dir / RUN, json.dumps(run_info, ensure_ascii=False, indent=2).encode())
        return cls(run_dir)

    @classmethod
    def resume(cls, run_dir: Path) -> RunStore:
        """Open an existing run, keeping finished pages and phases and dropping the rest."""
        if not (run_dir / RUN).is_file():
            raise InputError(f"{run_dir}: not a run directory (no {RUN})")
        store = cls(run_dir)
        for d in _read_jsonl(run_dir / RESULTS):
            try:
                r = PageResult.from_json(d)
            except TypeError:
                continue
            if r.ok:
                store.results[r.key] = r
        for d in _read_jsonl(run_dir / PHASES):
            if isinstance(d.get("model"), str) and isinstance(d.get("stats"), dict):
                rec = PhaseRecord(d["model"], str(d.get("phase")), d["stats"])
                store.phases[(rec.model, rec.phase)] = rec
        _write_atomic(run_dir / RESULTS, b"".join(_line(asdict(r)) for r in store.results.values()))
        _write_atomic(run_dir / PHASES, b"".join(_line(asdict(p)) for p in store.phases.values()))
        return store

    @staticmethod
    def resume_info(run_dir: Path) -> dict[str, Any]:
        """What the run being resumed was asked to do (its run.json)."""
        try:
            data = json.loads((run_dir / RUN).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{run_dir}: not a run directory (no {RUN})") from None
        except (OSError, ValueError) as exc:
            raise InputError(f"{run_dir}/{RUN}: unreadable: {exc}") from None
        if not isinstance(data, dict):
            raise InputError(f"{run_dir}/{RUN}: not a JSON object")
        return data

    def is_done(self, doc: str, page: int, model: str) -> bool:
        return (doc, page, model) in self.results

    async def add_result(self, result: PageResult) -> None:
        self.results[result.key] = result
        await self._append(RESULTS, _line(asdict(result)))

    async def add_phase(self, record: PhaseRecord) -> None:
        self.phases[(record.model, record.phase)] = record
        await self._append(PHASES, _line(asdict(record)))

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
        await loop.run_in_executor(self._io, _write_atomic, self.dir / name, text.encode("utf-8"))

    def close(self) -> None:
        self._io.submit(self._close_files).result()
        self._io.shutdown(wait=True)

    def _close_files(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
