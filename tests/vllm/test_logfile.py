"""Our marker lines in a model's log: where the current run starts, and how it ended."""

from __future__ import annotations

from pathlib import Path

from ocrtui.pod.local import LocalPod
from ocrtui.vllm.logfile import (
    append_marker,
    current_run,
    last_marker,
    marker_line,
    parse_marker,
    start_duration,
)


def test_markers_round_trip_and_split_runs() -> None:
    launch, stop = marker_line("launch", "glm"), marker_line("stop", "glm")
    assert parse_marker(launch) == "launch" and parse_marker(stop) == "stop"
    assert parse_marker("(APIServer pid=1) [ocrtui] launch x") is None
    assert current_run(["a", launch, "b", "c"]) == (["b", "c"], "launch")
    assert current_run(["a", launch, "b", stop]) == ([], "stop")
    assert current_run(["a", "b"]) == (["a", "b"], None)


async def test_append_and_find_the_last_marker_on_a_pod(tmp_path: Path) -> None:
    log = tmp_path / "it's a log; $(touch x).log"
    pod = LocalPod()
    await pod.connect()
    assert await last_marker(pod, str(log)) is None
    await append_marker(pod, str(log), "launch", "glm")
    log.open("a").write("server output\n")
    await append_marker(pod, str(log), "stop", "glm")
    log.open("a").write("more\n")
    assert await last_marker(pod, str(log)) == "stop"
    assert not (tmp_path / "x").exists()
    assert current_run(log.read_text().splitlines()) == (["more"], "stop")


def test_start_duration_is_launch_to_ready_of_the_last_start_that_got_ready() -> None:
    lines = [
        "[ocrtui] launch glm 2026-12-01T19:30:00+0000",
        "[ocrtui] ready glm 2026-12-01T19:30:51+0000",
        "[ocrtui] stop glm 2026-12-01T19:40:00+0000",
        "[ocrtui] launch glm 2026-12-01T19:41:00+0000",  # crashed: never ready
        "[ocrtui] launch glm 2026-12-01T19:42:00+0000",
    ]
    assert start_duration(lines) == 51.0
    assert start_duration(lines[:1]) is None
    assert parse_marker(lines[1]) is None  # a ready line starts no run
