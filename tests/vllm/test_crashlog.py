"""The lines that explain a crash come first, ahead of the CPU build's exit noise."""

from __future__ import annotations

from ocrtui.vllm.crashlog import crash_lines, ending_exception, is_noise
from tests.plugins.vllm_logs import fixture_lines


def test_engine_dead_error_survives_the_nanobind_noise() -> None:
    lines = fixture_lines("real_v0_32_cpu_enginecore_kill9_tail.log")
    # Before: the last 12 lines are all leak reports.
    assert all("EngineDeadError" not in line for line in lines[-12:])
    got = crash_lines(lines)
    assert got.cause[-1].endswith(
        "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. "
        "See stack trace (above) for the root cause."
    )
    assert any('core_client.py", line 1235, in get_output_async' in s for s in got.cause)
    assert any("raise self._format_exception(outputs)" in s for s in got.cause)
    assert not any(is_noise(s) for s in got.tail)
    assert got.tail[-1] == "INFO:     Finished server process [23888]"
    assert got.lines[: len(got.cause)] == got.cause


def test_failed_start_shows_the_root_cause_and_the_last_exception() -> None:
    lines = fixture_lines("real_v0_26_h200_C_direct_free_memory.log")
    got = crash_lines(lines)
    assert "ValueError: Free memory on device cuda:0 (6.13/139.8 GiB)" in got.cause[0]
    assert got.cause[-1].endswith(
        "RuntimeError: Engine core initialization failed. See root cause above. "
        "Failed core proc(s): {}"
    )
    assert 'utils.py", line 1272, in wait_for_engine_startup' in got.cause[-3]


def test_a_clean_sigterm_has_no_cause_and_a_tail_without_noise() -> None:
    got = crash_lines(fixture_lines("real_v0_32_cpu_serve_sigterm.log"))
    assert got.cause == ()
    assert got.tail[-1] == "INFO:     Application shutdown complete."
    assert len(got.tail) == 12


def test_one_traceback_reader_for_models_and_services() -> None:
    """crash_lines and service_hint read tracebacks alike (they had drifted: services missed
    prefixed frames, the crash reader missed a bare KeyboardInterrupt)."""
    from ocrtui.services import service_hint

    prefixed = [
        "(APIServer pid=7) ERROR 12-07 02:53:48 [core.py:1330] Traceback (most recent call last):",
        '(APIServer pid=7) ERROR 12-07 02:53:48 [core.py:1330]   File "x.py", line 3, in f',
        "(APIServer pid=7) ERROR 12-07 02:53:48 [core.py:1330]     g()",
        "(APIServer pid=7) ERROR 12-07 02:53:48 [core.py:1330] torch.AcceleratorError: boom",
    ]
    assert ending_exception(prefixed) == prefixed[-1]
    assert service_hint(prefixed, 9000) == prefixed[-1]
    assert crash_lines(prefixed).cause[-1] == prefixed[-1]
    interrupted = [
        "Traceback (most recent call last):",
        '  File "x.py", line 1',
        "KeyboardInterrupt",
    ]
    assert ending_exception(interrupted) == "KeyboardInterrupt"
    assert crash_lines(interrupted).cause == ('  File "x.py", line 1', "KeyboardInterrupt")
    assert ending_exception([*interrupted, "serving again"]) is None
