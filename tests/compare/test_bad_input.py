"""Bad documents are per-document errors: bombs, FIFOs, huge files, names that are not UTF-8."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from ocrtui.compare.client import ModelTarget
from ocrtui.compare.documents import DocumentError, expand_inputs, inspect_document
from ocrtui.compare.events import DocumentFailed, DocumentReady, RunDone
from ocrtui.compare.runner import RunPlan, start_run
from ocrtui.compare.store import RunRecord, RunStore
from ocrtui.config import CompareConfig
from ocrtui.userfiles import FileLimits
from tests.plugins.compare_inputs import model
from tests.plugins.fake_chat_server import fake_vllm

SETTINGS = CompareConfig(warm_runs=1, throughput_requests=1, concurrency=2, retries=0)
NOT_UTF8 = os.fsdecode(b"caf\xe9.png")


def bomb_png(path: Path, side: int = 40_000) -> Path:
    """A PNG whose header claims side x side pixels (1.6 Gpx) in a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path


def page_png(path: Path) -> Path:
    Image.new("RGB", (400, 300), "white").save(path)
    return path


def test_decompression_bomb_is_a_document_error(tmp_path: Path) -> None:
    [spec] = expand_inputs([str(bomb_png(tmp_path / "bomb.png"))])
    with pytest.raises(DocumentError, match=r"bomb\.png: .*Mpx limit \(compare.max_page_mpx\)"):
        inspect_document(spec)


def test_pixel_cap_is_configurable(tmp_path: Path) -> None:
    [spec] = expand_inputs([str(page_png(tmp_path / "small.png"))])
    with pytest.raises(DocumentError, match="page 1 is 400x300"):
        inspect_document(spec, FileLimits(max_page_pixels=100_000))
    assert inspect_document(spec).page_count == 1


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    [spec] = expand_inputs([str(fifo)])
    with pytest.raises(DocumentError, match=r"pipe\.pdf: is a FIFO"):
        inspect_document(spec)


def test_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "huge.pdf"
    with huge.open("wb") as f:
        f.truncate(201 * 1_000_000)  # sparse: costs no disk
    [spec] = expand_inputs([str(huge)])
    with pytest.raises(DocumentError, match=r"201 MB, over the 200 MB limit \(compare.max_file_mb"):
        inspect_document(spec)


def test_reference_that_is_a_fifo_is_a_document_error(tmp_path: Path) -> None:
    page = page_png(tmp_path / "scan.png")
    os.mkfifo(tmp_path / "scan.md")
    [spec] = expand_inputs([str(page)])
    with pytest.raises(DocumentError, match=r"scan\.png: reference: .*scan\.md: is a FIFO"):
        inspect_document(spec)


def test_name_that_is_not_utf8_is_shown_with_replacement_chars(tmp_path: Path) -> None:
    page_png(tmp_path / NOT_UTF8)
    [spec] = expand_inputs([str(tmp_path)])
    assert spec.name.endswith("caf\ufffd.png")
    assert inspect_document(spec).page_count == 1


async def test_a_folder_of_bad_files_fails_them_one_by_one(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    bomb_png(folder / "a-bomb.png")
    page_png(folder / NOT_UTF8)
    (folder / "d-broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    page_png(folder / "e-good.png")
    specs = expand_inputs([str(folder)])
    run_dir = tmp_path / "run"
    with fake_vllm() as fake:
        plan = RunPlan(tuple(specs), (ModelTarget(model("m"), fake.url),), SETTINGS)
        run = start_run(plan, RunStore.create(run_dir, RunRecord(docs=(str(folder / NOT_UTF8),))))
        events = [ev async for ev in run.subscribe()]
    failed = {e.doc for e in events if isinstance(e, DocumentFailed)}
    ready = {e.doc for e in events if isinstance(e, DocumentReady)}
    assert {Path(n).name for n in failed} == {"a-bomb.png", "d-broken.png"}
    assert {Path(n).name for n in ready} == {"caf\ufffd.png", "e-good.png"}
    done = events[-1]
    assert isinstance(done, RunDone) and done.error is None
    docs = {json.loads(line)["doc"] for line in (run_dir / "results.jsonl").open()}
    assert {Path(d).name for d in docs} == {"caf\ufffd.png", "e-good.png"}
    assert json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    # run.json keeps the exact path, so --resume finds the file again.
    saved = RunStore.resume_info(run_dir).docs
    assert saved == (str(folder / NOT_UTF8),)
