"""The model state machine as a pure function of the agent's facts, HTTP and the log."""

from __future__ import annotations

from ocrtui.vllm.client import Health
from ocrtui.vllm.state import ProcessFacts, decide
from tests.plugins.vllm_logs import fixture_lines

ALIVE = ProcessFacts(server_pid=100, alive=True, listening=False)
LISTENING = ProcessFacts(server_pid=100, alive=True, listening=True)
GONE = ProcessFacts(server_pid=None, alive=False, listening=False)
REFUSED = Health(None, None, "connection refused")
OK = Health(200, 1.5)
LAUNCH = "[ocrtui] launch glm 2026-01-01T00:00:00+0000"
STOP = "[ocrtui] stop glm 2026-01-01T00:00:00+0000"


def test_ready_needs_health_and_the_served_name() -> None:
    assert decide(LISTENING, OK, True, None, None).state == "ready"
    other = decide(LISTENING, OK, False, None, None, served_name="glm")
    assert other.state == "unhealthy" and other.hint and "'glm'" in other.hint


def test_503_is_unhealthy() -> None:
    v = decide(LISTENING, Health(503, 2.0), None, [], None)
    assert v.state == "unhealthy" and v.hint == "/health answered 503"


def test_timeout_on_a_listening_port_is_unhealthy() -> None:
    v = decide(LISTENING, Health(None, None, "timeout"), None, [LAUNCH], None)
    assert v.state == "unhealthy"


def test_starting_with_stage_from_the_current_run_only() -> None:
    old_run = fixture_lines("startup_log_v0_9_1_dotsocr_wsl.txt")
    tail = [*old_run, LAUNCH, "INFO 01-01 [core.py:1] Initializing a V1 LLM engine (v0.33.0)"]
    v = decide(ALIVE, REFUSED, None, tail, None)
    assert v.state == "starting" and str(v.stage) == "initializing engine"


def test_a_ready_server_that_stops_answering_is_not_starting() -> None:
    lines = fixture_lines("startup_log_v0_9_1_dotsocr_wsl.txt")
    end = next(i for i, line in enumerate(lines) if "Application startup complete" in line)
    tail = [LAUNCH, *lines[: end + 1]]
    assert decide(ALIVE, REFUSED, None, tail, None, was_ready=False).state == "starting"
    assert decide(ALIVE, REFUSED, None, tail, None, was_ready=True).state == "unhealthy"


def test_shutting_down_is_down_stopping() -> None:
    tail = [LAUNCH, "(APIServer pid=1) INFO:     Shutting down"]
    v = decide(ALIVE, REFUSED, None, tail, None)
    assert v.state == "down" and str(v.stage) == "stopping"


def test_fatal_log_while_alive_is_crashed_with_hint() -> None:
    tail = [LAUNCH, *fixture_lines("glm_ocr_free_memory_error_docker_log_v0_18_1rc1.txt")]
    v = decide(ALIVE, REFUSED, None, tail, None)
    assert v.state == "crashed" and v.hint and v.hint.startswith("only 3.22 of 4.0 GiB")
    assert v.last_lines and all("\x1b" not in line for line in v.last_lines)


def test_gone_after_our_launch_is_crashed_after_our_stop_is_down() -> None:
    assert decide(GONE, REFUSED, None, [LAUNCH, "x"], None).state == "crashed"
    assert decide(GONE, REFUSED, None, [LAUNCH, "x", STOP, "y"], None).state == "down"
    # Marker beyond the tail: the whole-log lookup decides.
    assert decide(GONE, REFUSED, None, ["x"], "launch").state == "crashed"
    assert decide(GONE, REFUSED, None, ["x"], "stop").state == "down"
    assert decide(GONE, REFUSED, None, ["x"], None).state == "down"


def test_orphans_without_a_server_are_crashed_naming_them() -> None:
    facts = ProcessFacts(None, False, False, orphans=((4242, 18427, 700),))
    v = decide(facts, REFUSED, None, [STOP], None)
    assert v.state == "crashed" and v.hint and "pid 4242 (18427 MiB)" in v.hint
    assert "GPU memory" in v.hint


def test_orphans_holding_only_ram_are_named_with_their_rss() -> None:
    """A CPU vLLM after kill -9 of its API server: EngineCore, Worker, tracker live on."""
    facts = ProcessFacts(None, False, False, orphans=((7019, 0, 674), (7113, 0, 1805)))
    v = decide(facts, REFUSED, None, [LAUNCH], None)
    assert v.state == "crashed" and v.hint
    assert "pid 7019 (674 MiB RAM), pid 7113 (1805 MiB RAM)" in v.hint


def test_probe_lines_are_left_out_of_last_lines() -> None:
    probe = '(APIServer pid=7) INFO:     127.0.0.1:5 - "GET /health HTTP/1.1" 200 OK'
    v = decide(GONE, REFUSED, None, [LAUNCH, "real line", probe, probe], None)
    assert v.last_lines == ("real line",)


def test_no_agent_data_yet() -> None:
    assert decide(None, OK, True, None, None).state == "ready"
    v = decide(None, REFUSED, None, [LAUNCH], None)
    assert v.state == "down" and v.hint and "agent" in v.hint


def test_crashed_last_lines_lead_with_the_cause_not_the_exit_noise() -> None:
    tail = fixture_lines("real_v0_32_cpu_enginecore_kill9_tail.log")
    v = decide(GONE, REFUSED, None, [LAUNCH, *tail], None)
    assert v.state == "crashed"
    # The last frame, its code line and the message, then the tail without leak reports.
    assert "EngineDeadError: EngineCore encountered an issue" in v.last_lines[2]
    assert not any("nanobind" in line or "leaked" in line for line in v.last_lines)
    assert v.last_lines[-1] == "INFO:     Finished server process [23888]"


def test_a_launch_marker_newer_than_the_process_data_is_starting_not_crashed() -> None:
    """Another observer at the instant of a launch: the marker is in the log, the agent's
    sample was taken before the server existed."""
    marker = "[ocrtui] launch glm 2026-12-01T19:30:05.250+00:00"
    marked = 1796153405.25  # that time
    before = ProcessFacts(None, False, False, sample_t=marked - 0.4)
    v = decide(before, REFUSED, None, [marker], None)
    assert v.state == "starting" and v.stage is not None and v.stage.name == "launched"
    later = ProcessFacts(None, False, False, sample_t=marked + 2)  # it exited at once
    assert decide(later, REFUSED, None, [marker], None).state == "crashed"
    assert decide(GONE, REFUSED, None, [marker], None).state == "crashed"  # no sample time


def test_a_start_that_failed_within_a_second_is_crashed_for_a_second_observer() -> None:
    """Issue 22 bug 1: the fatal line after the launch marker decides, not the clock."""
    marker = "[ocrtui] launch glm 2026-12-01T19:30:05.250+00:00"
    marked = 1796153405.25
    just_after = ProcessFacts(None, False, False, sample_t=marked + 0.3)
    fatal = "vllm: error: unrecognized arguments: --bogus-flag"
    v = decide(just_after, REFUSED, None, [marker, fatal], None)
    assert v.state == "crashed" and v.hint and "--bogus-flag" in v.hint
    # Nothing fatal yet: still a launch just begun.
    assert decide(just_after, REFUSED, None, [marker], None).state == "starting"


def test_the_glm_mtp_crash_reads_crashed_once_the_engine_core_fails_never_an_earlier_stage() -> (
    None
):
    """The GPU run: stages up to graph capture, then the EngineCore's traceback while the API
    server lives on for seconds. Followed as the probe reads it (a 200-line tail), the state
    goes from the last stage straight to crashed with the graph-capture hint."""
    *lines, stop = fixture_lines("real_v0_26_h100_glm_ocr_mtp_graph_capture.log")
    assert stop.startswith("[ocrtui] stop")  # written by the failed start's clean-up
    failed_at = next(i for i, line in enumerate(lines) if "EngineCore failed to start" in line)
    seen: list[tuple[str, str | None]] = []
    for n in range(1, len(lines) + 1):
        v = decide(ALIVE, REFUSED, None, lines[max(0, n - 200) : n], None)
        state = (v.state, str(v.stage) if v.stage else None)
        if not seen or seen[-1] != state:
            seen.append(state)
        if n > failed_at:
            assert v.state == "crashed", (n, state)
    assert seen[-2:] == [("starting", "graph capture"), ("crashed", None)]
    final = decide(ALIVE, REFUSED, None, lines[-200:], None)
    assert final.hint and final.hint.startswith("MTP's draft step (glm_ocr_mtp.py)")
