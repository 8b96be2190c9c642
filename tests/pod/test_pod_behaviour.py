"""What every pod does, checked on LocalPod and on SSHPod through a real sshd."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ocrtui.pod import ConnState, Pod
from tests.plugins.processes import eventually, pgid_of, pid_alive

HOSTILE = [
    "it's",
    'say "hi"',
    "$(touch {canary})",
    "`touch {canary}`",
    "; touch {canary}",
    "a && touch {canary} || true",
    "line1\nline2\ntouch {canary}",
    "  spaces  around  ",
    "tab\there",
    "",
    "unicode 邓 12D → ✓ é",
    "$HOME ${PATH} \\ back\\slash",
    "*",
    "> {canary}",
    "-n",
    "--",
]

ARGV_DUMP = "import sys, json; print(json.dumps(sys.argv[1:]))"


async def test_hostile_arguments_arrive_unchanged_and_run_nothing(pod: Pod, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    args = [a.replace("{canary}", str(canary)) for a in HOSTILE]
    result = await pod.run(["python3", "-c", ARGV_DUMP, *args])
    assert result.ok, result.stderr
    assert json.loads(result.stdout) == args
    assert not canary.exists()


async def test_hostile_arguments_through_a_shell_snippet(pod: Pod, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    args = [a.replace("{canary}", str(canary)) for a in HOSTILE]
    result = await pod.run(["sh", "-c", 'for a in "$@"; do printf "%s\\0" "$a"; done', "sh", *args])
    assert result.stdout.split("\0")[:-1] == args
    assert not canary.exists()


async def test_run_reports_status_output_and_input(pod: Pod) -> None:
    result = await pod.run(["sh", "-c", 'cat; echo oops >&2; exit "$1"', "sh", "3"], input="fed\n")
    assert (result.exit_status, result.stdout, result.stderr) == (3, "fed\n", "oops\n")
    assert not result.ok
    assert result.argv == ("sh", "-c", 'cat; echo oops >&2; exit "$1"', "sh", "3")


async def test_run_timeout_kills_the_command(pod: Pod, tmp_path: Path, reaper: list[int]) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(TimeoutError):
        await pod.run(["sh", "-c", 'echo $$ > "$1"; exec sleep 300', "sh", str(pidfile)], timeout=1)
    pid = int(pidfile.read_text())
    reaper.append(pid)
    await eventually(lambda: not pid_alive(pid), what=f"timed-out command {pid} killed")
    assert pod.state is ConnState.CONNECTED


async def test_stream_yields_lines_as_they_come(pod: Pod, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    script = 'echo first; while [ ! -e "$1" ]; do sleep 0.02; done; echo second; echo "$2"'
    lines = pod.stream(["sh", "-c", script, "sh", str(flag), "trailing 邓"])
    # The first line arrives while the command still waits for the flag: it is live.
    assert await asyncio.wait_for(anext(lines), 10) == "first"
    flag.touch()
    assert [line async for line in lines] == ["second", "trailing 邓"]


async def test_stream_feeds_input(pod: Pod) -> None:
    lines = [line async for line in pod.stream(["cat"], input="a\nb c\n")]
    assert lines == ["a", "b c"]


async def test_closing_a_stream_ends_the_command(
    pod: Pod, tmp_path: Path, reaper: list[int]
) -> None:
    # Silent after its first line, so only an explicit kill (not EPIPE) can end it.
    script = "echo $$; exec sleep 300"
    lines = pod.stream(["sh", "-c", script])
    pid = int(await asyncio.wait_for(anext(lines), 10))
    reaper.append(pid)
    assert pid_alive(pid)
    await lines.aclose()
    await eventually(lambda: not pid_alive(pid), what=f"streamed command {pid} ended")


async def test_start_detached_signal_and_tail(pod: Pod, tmp_path: Path, reaper: list[int]) -> None:
    workdir = tmp_path / "it's a $(touch canary) `dir`"
    workdir.mkdir()
    log = workdir / "server; log.txt"
    script = 'echo "started in $(pwd) with $GREETING"; echo "$1"; exec sleep 300'
    pid = await pod.start_detached(
        ["sh", "-c", script, "sh", "arg with 'quotes' $(no)"],
        log_file=str(log),
        env={"GREETING": "hello world; $(touch canary)"},
        cwd=str(workdir),
    )
    reaper.append(pid)
    assert pid_alive(pid)
    assert pgid_of(pid) == pid  # leads its own group: the whole tree can be signalled
    await eventually(lambda: len(log.read_text().splitlines()) == 2 if log.exists() else False)
    assert await pod.tail(str(log), 5) == [
        f"started in {workdir} with hello world; $(touch canary)",
        "arg with 'quotes' $(no)",
    ]
    assert await pod.tail(str(log), 1) == ["arg with 'quotes' $(no)"]
    assert await pod.signal(pid, 0)
    assert await pod.signal(pid, "TERM", group=True)
    await eventually(lambda: not pid_alive(pid), what=f"detached {pid} gone after TERM")
    assert not (workdir / "canary").exists() and not (tmp_path / "canary").exists()
    assert not (Path.home() / "canary").exists()


async def test_signal_and_tail_of_missing_things(pod: Pod, tmp_path: Path) -> None:
    assert await pod.tail(str(tmp_path / "absent.log")) == []
    # Far above pid_max, so no process can have it.
    assert not await pod.signal(4_000_000, "TERM")
    with pytest.raises(KeyError):
        await pod.signal(1, "NOSUCHSIGNAL")


async def test_start_detached_keeps_the_environment_off_the_command_line(
    pod: Pod, tmp_path: Path, reaper: list[int]
) -> None:
    secret = "sk-not-for-ps-$(x)"
    log = tmp_path / "env.log"
    pid = await pod.start_detached(
        ["sh", "-c", 'echo "key=$VLLM_API_KEY"; exec sleep 300'],
        log_file=str(log),
        env={"VLLM_API_KEY": secret},
        cwd=str(tmp_path),
    )
    reaper.append(pid)
    await eventually(lambda: log.exists() and log.read_text() == f"key={secret}\n")
    assert secret not in await asyncio.to_thread(Path(f"/proc/{pid}/cmdline").read_text)
    with pytest.raises(ValueError, match="'BAD NAME'"):
        await pod.start_detached(["true"], log_file=str(log), env={"BAD NAME": "x"})
    with pytest.raises(ValueError, match="'MULTI'"):
        await pod.start_detached(["true"], log_file=str(log), env={"MULTI": "a\nb"})


async def test_start_detached_in_a_missing_directory(pod: Pod, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        await pod.start_detached(["true"], log_file="x.log", cwd=str(tmp_path / "nope"))


async def test_expand_dir(pod: Pod, tmp_path: Path) -> None:
    home = (await pod.run(["sh", "-c", 'printf %s "$HOME"'])).stdout
    assert await pod.expand_dir("~") == home
    (tmp_path / "sub dir").mkdir()
    assert await pod.expand_dir(str(tmp_path / "sub dir")) == str(tmp_path / "sub dir")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        await pod.expand_dir(str(tmp_path / "missing"))


async def test_detached_process_survives_closing_the_pod(
    pod: Pod, tmp_path: Path, reaper: list[int]
) -> None:
    pid = await pod.start_detached(["sleep", "300"], log_file=str(tmp_path / "l"), cwd="/")
    reaper.append(pid)
    await pod.close()
    assert pod.state is ConnState.CLOSED
    await pod.connect()
    assert pod.state is ConnState.CONNECTED
    assert pid_alive(pid)
    assert await pod.signal(pid, "KILL", group=True)
    await eventually(lambda: not pid_alive(pid))


async def test_forward_round_trip(pod: Pod, echo_server: int) -> None:
    url = await pod.forward(echo_server)
    assert url.startswith("http://127.0.0.1:")
    assert await pod.forward(echo_server) == url  # one local port per remote port
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = "ping 邓\n".encode() * 20_000  # larger than one SSH window packet
    writer.write(payload)
    await writer.drain()
    assert await reader.readexactly(len(payload)) == payload
    writer.close()
    await writer.wait_closed()


async def test_follow_ends_when_the_command_does(pod: Pod) -> None:
    lines = [line async for line in pod.follow(["printf", "a\\nb\\n"])]
    assert lines == ["a", "b"]


async def test_stream_keeps_blank_lines_and_a_last_partial_line(pod: Pod) -> None:
    for _ in range(5):  # EOF races showed up only sometimes
        lines = [line async for line in pod.stream(["printf", "a\\n\\nb"])]
        assert lines == ["a", "", "b"]
