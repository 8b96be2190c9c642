"""`ocrtui compare` argument handling, exit codes, and kill -9 / --resume in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocrtui.cli import main
from tests.plugins.compare_inputs import MakePdf
from tests.plugins.sim import SimServers, start_pair

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    p = tmp_path / "ocrtui.toml"
    p.write_text(
        """
[pod]
kind = "local"
[[models]]
name = "glm-ocr"
model = "zai-org/GLM-OCR"
port = 8000
gpu_memory_utilization = 0.4
profile = "glm-ocr"
""",
        encoding="utf-8",
    )
    return p


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "{tmp}/missing.toml"], "suite file not found"),
        (["--pages", "3-1", "x.pdf"], "runs backwards"),
        (["--models", "nope", "x.pdf"], "no model or API arm named 'nope'"),
        (["--resume", "{tmp}"], "not a run directory"),
        (["--concurrency", "0", "x.pdf"], "concurrency: should be greater than or equal to 1"),
        (["--concurrency", "257", "x.pdf"], "concurrency: should be less than or equal to 256"),
    ],
)
def test_usage_errors_exit_2(
    config_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["--config", str(config_file), "compare", "--headless", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ocrtui", *args],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: the render workers die with it
            # A suite started as a background job (`./dev test &`) inherits SIGINT ignored,
            # and a Python started so never raises KeyboardInterrupt: give it Ctrl-C back.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _two_models(tmp_path: Path, glm: str, lighton: str) -> Path:
    """A config file for the two simulator servers at these URLs."""
    cfg = tmp_path / "ocrtui.toml"
    cfg.write_text(
        f"""
[pod]
kind = "local"
workdir = "{tmp_path}"
[[models]]
name = "glm-ocr"
model = "zai-org/GLM-OCR"
port = {glm.rsplit(":", 1)[1]}
gpu_memory_utilization = 0.4
profile = "glm-ocr"
[[models]]
name = "lighton-ocr"
model = "lightonai/LightOnOCR-2-1B"
port = {lighton.rsplit(":", 1)[1]}
gpu_memory_utilization = 0.55
profile = "lighton-ocr"
[compare]
warm_runs = 2
throughput_requests = 3
concurrency = 2
""",
        encoding="utf-8",
    )
    return cfg


@pytest.mark.faults
def test_kill_9_then_resume_loses_and_duplicates_nothing(
    make_pdf: MakePdf,
    tmp_path: Path,
    spawned: list[subprocess.Popen[bytes]],
    sim_servers: SimServers,
) -> None:
    # Each page takes 1.5 s, so the SIGINT comes long before the last page on any machine;
    # few pages, so the report written on the way out stays quick on a loaded one.
    pdf = make_pdf("long.pdf", [f"page {i}" for i in range(1, 21)])
    run_dir, log = tmp_path / "run", tmp_path / "log.txt"
    # Slow enough (0.1 s a request) that the kill lands mid-run.
    slow = ["--sim-prefill-s", "0.1", "--sim-per-token-s", "0.0001", "--sim-tokens-per-page", "20"]
    glm, lighton = start_pair(sim_servers, ("synthetic", "synthetic"), *slow)
    cfg = _two_models(tmp_path, glm, lighton)
    base = ["--config", str(cfg), "compare", "--headless"]
    spawned.append(_spawn([*base, "--out", str(run_dir), str(pdf)], log))
    results = run_dir / "results.jsonl"
    deadline = time.monotonic() + 60
    while _count_lines(results) < 4:
        assert spawned[0].poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    os.killpg(spawned[0].pid, signal.SIGKILL)
    spawned[0].wait(timeout=10)
    assert _count_lines(results) < 40
    spawned.append(_spawn([*base, "--resume", str(run_dir)], log))
    assert spawned[1].wait(timeout=90) == 0, log.read_text()
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    keys = [(r["doc"], r["page"], r["model"]) for r in rows]
    assert len(keys) == len(set(keys)) == 40
    assert all(r["ok"] for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["models"]["glm-ocr"]["pages_ok"] == 20
    assert summary["models"]["lighton-ocr"]["pages_ok"] == 20
    assert "OCR comparison" in log.read_text()


def test_sigint_exits_130_and_says_how_to_resume(
    make_pdf: MakePdf,
    tmp_path: Path,
    spawned: list[subprocess.Popen[bytes]],
    sim_servers: SimServers,
) -> None:
    # Each page takes 1.5 s, so the SIGINT comes long before the last page on any machine;
    # few pages, so the report written on the way out stays quick on a loaded one.
    pdf = make_pdf("long.pdf", [f"page {i}" for i in range(1, 21)])
    run_dir, log = tmp_path / "run", tmp_path / "log.txt"
    slow = ["--sim-prefill-s", "1.5", "--sim-per-token-s", "0.0001", "--sim-tokens-per-page", "20"]
    cfg = _two_models(tmp_path, *start_pair(sim_servers, ("synthetic", "synthetic"), *slow))
    args = ["--config", str(cfg), "compare", "--headless", "--out", str(run_dir), str(pdf)]
    spawned.append(_spawn(args, log))
    deadline = time.monotonic() + 120
    while _count_lines(run_dir / "results.jsonl") < 2:
        assert spawned[0].poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    spawned[0].send_signal(signal.SIGINT)
    assert spawned[0].wait(timeout=30) == 130, log.read_text()
    out = log.read_text()
    assert f"continue with: ocrtui compare --resume {run_dir}" in out.replace("\n", "")
    assert (run_dir / "summary.json").exists()


@pytest.mark.parametrize("flags", [["--headless"], []])
def test_unreachable_model_exits_3(
    tmp_path: Path, make_pdf: MakePdf, capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    """Without --headless and with stdout not a terminal (here: captured), headless too."""
    from tests.plugins.sim import free_port

    cfg = tmp_path / "ocrtui.toml"
    cfg.write_text(
        f"""
[pod]
kind = "local"
workdir = "{tmp_path}"
[[models]]
name = "glm-ocr"
model = "zai-org/GLM-OCR"
port = {free_port()}
gpu_memory_utilization = 0.4
""",
        encoding="utf-8",
    )
    pdf = make_pdf("a.pdf", ["x"])
    code = main(["--config", str(cfg), "compare", *flags, "--out", str(tmp_path / "r"),
                 str(pdf)])  # fmt: skip
    assert code == 3
    err = capsys.readouterr().err
    assert ("stdout is not a terminal; comparing headless" in err) == (not flags)
    assert "model glm-ocr at http://127.0.0.1:" in err and "is not answering" in err


def test_resume_from_another_directory_keeps_document_names(
    config_file: Path, tmp_path: Path, make_pdf: MakePdf, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocrtui.cli import _parser
    from ocrtui.compare.cli import request_from_args
    from ocrtui.compare.launch import open_store, resolve
    from ocrtui.config import load_config

    config = load_config(config_file)
    make_pdf("doc.pdf", ["x"])
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    args = _parser().parse_args(["compare", "--out", "run", "doc.pdf"])
    first = resolve(config, request_from_args(args))
    open_store(first).close()
    monkeypatch.chdir(tmp_path / "elsewhere")
    args = _parser().parse_args(["compare", "--resume", str(tmp_path / "run")])
    again = resolve(config, request_from_args(args))
    assert [d.name for d in again.documents] == [d.name for d in first.documents] == ["doc.pdf"]
    assert again.documents[0].path == tmp_path / "doc.pdf"


def test_on_a_terminal_compare_opens_the_dashboard(
    config_file: Path, make_pdf: MakePdf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ocrtui.tui.app

    opened: list[tuple[Any, bool]] = []

    def dashboard(config: Any, request: Any, *, demo: bool) -> int:
        opened.append((request, demo))
        return 1

    monkeypatch.setattr(ocrtui.tui.app, "run_comparison_dashboard", dashboard)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    pdf = make_pdf("a.pdf", ["x"])
    out = tmp_path / "r"
    assert main(["--config", str(config_file), "compare", "--out", str(out), str(pdf)]) == 1
    [(request, demo)] = opened
    assert request.run_dir == out and [d.path for d in request.documents] == [pdf] and not demo


def test_a_run_is_named_by_its_documents_or_suite(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocrtui.compare.launch import CompareRequest, resolve
    from ocrtui.config import load_config

    config = load_config(config_file)
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "contracts.toml"
    suite.write_text('[[documents]]\npath = "a.pdf"\n', encoding="utf-8")
    assert resolve(config, CompareRequest(documents=("a.pdf", "b.png"))).label == "a.pdf b.png"
    assert resolve(config, CompareRequest(suite=str(suite))).label == "contracts"
    assert resolve(config, CompareRequest()).label == "sample suite"


def test_sweep_flag_adds_the_configured_levels_to_the_runs_concurrency(
    config_file: Path, tmp_path: Path
) -> None:
    from ocrtui.cli import _parser
    from ocrtui.compare.cli import request_from_args
    from ocrtui.compare.launch import resolve
    from ocrtui.config import load_config

    config = load_config(config_file)
    pdf = tmp_path / "a.pdf"

    def levels(*argv: str) -> tuple[int, ...]:
        args = _parser().parse_args(["compare", "--out", str(tmp_path / "run"), *argv, str(pdf)])
        return resolve(config, request_from_args(args)).concurrencies

    assert levels() == ()  # the seed's one level, compare.concurrency
    assert levels("--sweep") == (1, 5, 16, 32, 64)
    assert levels("--sweep", "--concurrency", "8") == (1, 5, 8, 16, 32, 64)


DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("suite", "label", "names", "skipped"),
    [
        (DATA / "olmocr_bench" / "table_tests.jsonl", "table_tests", ["tables/q3.pdf"],
         {"type math": 1}),
        (DATA / "omni_parse_bench", "omni_parse_bench", ["inv1"], {"test_type layout_kind": 1}),
    ],
)  # fmt: skip
def test_suite_takes_the_benchmark_formats(
    config_file: Path, tmp_path: Path, suite: Path, label: str, names: list[str], skipped: dict
) -> None:
    from ocrtui.compare.documents import inspect_document
    from ocrtui.compare.launch import CompareRequest, resolve
    from ocrtui.config import load_config

    request = CompareRequest(suite=str(suite), out=str(tmp_path / "run"))
    setup = resolve(load_config(config_file), request)
    assert setup.label == label
    assert [d.name for d in setup.documents] == names
    assert dict(setup.skipped_tests) == skipped and setup.info.suite_skipped == skipped
    for spec in setup.documents:
        doc = inspect_document(spec)  # the page files beside the tests open
        assert doc.pages == (1,) and spec.tests


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bench.jsonl", '{"pdf": "a.pdf", "type": "present", "text": "x"}\n{oops\n',
         "bench.jsonl: line 2: not JSON"),
        ("bench.jsonl", '{"pdf": "a.pdf", "type": "math", "math": "x"}\n',
         "bench.jsonl: tests: no test ocrtui can run"),
        ("folder", None, "folder: gold: no gold/<page_id>.json files (not an Omni Parse Bench"),
    ],
)  # fmt: skip
def test_a_bad_benchmark_suite_is_one_error_naming_the_file(
    config_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_text(content, encoding="utf-8")
    argv = ["--config", str(config_file), "compare", "--headless", "--suite", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(tmp_path) in err, err


def test_variants_flag_is_parsed_and_recorded(config_file: Path, tmp_path: Path) -> None:
    from ocrtui.cli import _parser
    from ocrtui.compare.cli import request_from_args
    from ocrtui.compare.launch import resolve
    from ocrtui.config import load_config
    from ocrtui.errors import InputError

    config = load_config(config_file)

    def setup(*argv: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        args = _parser().parse_args(["compare", "--out", str(tmp_path / "run"), *argv, "a.pdf"])
        s = resolve(config, request_from_args(args))
        return s.variants, s.info.variants

    assert setup() == ((), ())
    assert setup("--variants", "clean, Blur,jpeg,blur") == (("clean", "blur", "jpeg"),) * 2
    with pytest.raises(InputError, match="unknown 'smudge'"):
        setup("--variants", "clean,smudge")


def test_two_runs_started_in_the_same_second_get_their_own_directories(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default run directory is named by the second: the second run of that second
    takes `<stamp>-2` (two tests on four workers collided on `runs/<stamp>`)."""
    from ocrtui.compare.launch import CompareRequest, open_store, resolve
    from ocrtui.config import load_config
    from ocrtui.errors import InputError

    config = load_config(config_file)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda _fmt: "20261207-090618")
    first, second = (resolve(config, CompareRequest()) for _ in range(2))
    assert first.run_dir == second.run_dir  # named alike; the store tells them apart
    stores = [open_store(first), open_store(second)]
    try:
        assert [s.dir.name for s in stores] == ["20261207-090618", "20261207-090618-2"]
    finally:
        for s in stores:
            s.close()
    # A directory given with --out is that one: a run already there is refused, as before.
    out = str(stores[0].dir)
    with pytest.raises(InputError, match="already holds a run"):
        open_store(resolve(config, CompareRequest(out=out)))
