"""SSHPod against a real OpenSSH sshd: host keys, config aliases, errors, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import asyncssh
import pytest

from ocrtui.config import PodConfig
from ocrtui.errors import ConfigError, HostKeyError, PodUnreachable
from ocrtui.pod import ConnState, PodConnectionLost
from ocrtui.pod.factory import make_pod
from ocrtui.pod.local import LocalPod
from ocrtui.pod.ssh import SSHPod
from tests.plugins.processes import eventually, pid_alive
from tests.plugins.sshd import Sshd


def fingerprint(pubkey: str) -> str:
    return str(asyncssh.import_public_key(pubkey).get_fingerprint("sha256"))


def _keygen(path: Path, kind: str) -> tuple[Path, str]:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path, " ".join(Path(f"{path}.pub").read_text().split()[:2])


@pytest.fixture
def spare_key(tmp_path: Path) -> tuple[Path, str]:
    """An ed25519 key pair unknown to the sshd and its known_hosts: (private path, public)."""
    return _keygen(tmp_path / "spare_key", "ed25519")


@pytest.fixture
def spare_ecdsa_key(tmp_path: Path) -> tuple[Path, str]:
    """A key of a type the sshd does not have."""
    return _keygen(tmp_path / "spare_ecdsa", "ecdsa")


async def test_connect_reports_states_and_runs(sshd: Sshd) -> None:
    pod = sshd.make_pod()
    seen: list[ConnState] = []
    pod.add_state_listener(seen.append)
    await pod.connect()
    try:
        assert seen == [ConnState.CONNECTING, ConnState.CONNECTED]
        assert (await pod.run(["id", "-un"])).stdout.strip() == sshd.user
    finally:
        await pod.close()
    assert pod.state is ConnState.CLOSED


async def test_unknown_host_key_is_refused_with_its_fingerprint(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    pod = sshd.make_pod(known_hosts=str(known))
    with pytest.raises(HostKeyError) as err:
        await pod.connect()
    message = str(err.value)
    assert f"127.0.0.1:{sshd.port}" in message
    assert fingerprint(sshd.host_pubkey) in message
    assert "unknown" in message
    assert "accept_new_host_key = true" in message
    assert err.value.exit_code == 3
    assert pod.state is ConnState.CLOSED
    assert known.read_text() == ""


async def test_changed_host_key_is_refused_even_with_accept_new(
    sshd: Sshd, tmp_path: Path, spare_key: tuple[Path, str]
) -> None:
    known = tmp_path / "known_hosts"
    recorded = f"[127.0.0.1]:{sshd.port} {spare_key[1]}\n"
    known.write_text(recorded)
    for accept_new in (False, True):
        pod = sshd.make_pod(known_hosts=str(known), accept_new_host_key=accept_new)
        with pytest.raises(HostKeyError) as err:
            await pod.connect()
        message = str(err.value)
        assert "CHANGED" in message
        assert fingerprint(sshd.host_pubkey) in message
        assert f"127.0.0.1:{sshd.port}" in message
        assert "accept_new_host_key" not in message
        assert known.read_text() == recorded


async def test_changed_host_key_type_is_refused(
    sshd: Sshd, tmp_path: Path, spare_ecdsa_key: tuple[Path, str]
) -> None:
    # Only an ECDSA key is on record, the pod offers only ED25519: that is a change too.
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {spare_ecdsa_key[1]}\n")
    pod = sshd.make_pod(known_hosts=str(known), accept_new_host_key=True)
    with pytest.raises(HostKeyError, match="CHANGED") as err:
        await pod.connect()
    assert fingerprint(sshd.host_pubkey) in str(err.value)
    assert known.read_text().count("\n") == 1


async def test_accept_new_host_key_records_it_in_the_default_file(
    sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the default is ~/.ssh/known_hosts
    default = tmp_path / ".ssh" / "known_hosts"
    pod = sshd.make_pod(known_hosts=None, accept_new_host_key=True)
    await pod.connect()
    await pod.close()
    assert default.read_text() == f"[127.0.0.1]:{sshd.port} {sshd.host_pubkey}\n"
    # Recorded once: the next connection needs no option and adds nothing.
    again = sshd.make_pod(known_hosts=None)
    await again.connect()
    assert (await again.run(["true"])).ok
    await again.close()
    assert default.read_text().count(sshd.host_pubkey) == 1


async def test_accept_new_appends_after_existing_entries(
    sshd: Sshd, tmp_path: Path, spare_key: tuple[Path, str]
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"pod.example.invalid {spare_key[1]}")  # no final newline
    pod = sshd.make_pod(known_hosts=str(known), accept_new_host_key=True)
    await pod.connect()
    await pod.close()
    lines = known.read_text().splitlines()
    assert lines[0].startswith("pod.example.invalid ")
    assert lines[1] == f"[127.0.0.1]:{sshd.port} {sshd.host_pubkey}"


async def test_ssh_config_alias_is_honoured(sshd: Sshd) -> None:
    config = sshd.write_ssh_config("gpu-pod")
    pod = SSHPod(PodConfig(host="gpu-pod", ssh_config=str(config)))
    await pod.connect()
    try:
        assert (await pod.run(["id", "-un"])).stdout.strip() == sshd.user
    finally:
        await pod.close()


async def test_host_key_message_names_the_alias(sshd: Sshd, tmp_path: Path) -> None:
    config = sshd.write_ssh_config("gpu-pod")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    pod = SSHPod(PodConfig(host="gpu-pod", ssh_config=str(config), known_hosts=str(empty)))
    with pytest.raises(HostKeyError, match=rf"127\.0\.0\.1:{sshd.port} \(ssh config alias"):
        await pod.connect()


async def test_unreachable_pod_names_host_port_and_reason(sshd: Sshd) -> None:
    sshd.stop()
    pod = sshd.make_pod()
    with pytest.raises(PodUnreachable) as err:
        await pod.connect()
    assert f"127.0.0.1:{sshd.port}" in str(err.value)
    assert "connection refused" in str(err.value)
    assert err.value.exit_code == 3
    assert pod.state is ConnState.CLOSED


async def test_refused_key_is_reported(sshd: Sshd, spare_key: tuple[Path, str]) -> None:
    pod = sshd.make_pod(identity_file=str(spare_key[0]))
    with pytest.raises(PodUnreachable, match=f"refused the key for user '{sshd.user}'"):
        await pod.connect()


async def test_missing_identity_file_is_a_config_error(sshd: Sshd, tmp_path: Path) -> None:
    pod = sshd.make_pod(identity_file=str(tmp_path / "no_such_key"))
    with pytest.raises(ConfigError, match=r"pod\.identity_file: .*no_such_key does not exist"):
        await pod.connect()


async def test_not_connected_pod_refuses_commands(sshd: Sshd) -> None:
    pod = sshd.make_pod()
    with pytest.raises(PodConnectionLost, match="not connected"):
        await pod.run(["true"])


def test_make_pod_picks_the_implementation(sshd: Sshd) -> None:
    assert isinstance(make_pod(PodConfig(kind="local")), LocalPod)
    assert isinstance(make_pod(sshd.pod_config()), SSHPod)


async def test_sshd_death_and_return(sshd: Sshd, echo_server: int, reaper: list[int]) -> None:
    """The pod's sshd dies mid-session: commands and streams fail, state goes lost and
    reconnecting, and within 5 s of sshd's return the link and the same forward are back."""
    pod = sshd.make_pod()
    seen: list[ConnState] = []
    pod.add_state_listener(seen.append)
    await pod.connect()
    try:
        url = await pod.forward(echo_server)
        port = int(url.rsplit(":", 1)[1])
        assert await _echo(port, b"before") == b"before"

        lines = pod.stream(["sh", "-c", "echo $$; exec sleep 300"])
        reaper.append(int(await anext(lines)))

        sshd.stop()
        with pytest.raises(PodConnectionLost):
            await asyncio.wait_for(anext(lines), 5)
        await pod.wait_for_state(ConnState.RECONNECTING, timeout=5)
        assert seen[-2:] == [ConnState.LOST, ConnState.RECONNECTING]
        with pytest.raises(PodConnectionLost, match="not connected"):
            await pod.run(["true"])
        await eventually(lambda: "connection refused" in (pod.last_error or ""))

        sshd.start()
        back = time.monotonic()
        await pod.wait_for_state(ConnState.CONNECTED, timeout=5)
        assert time.monotonic() - back < 5
        assert seen[-1] is ConnState.CONNECTED
        assert (await pod.run(["echo", "again"])).stdout == "again\n"
        assert await pod.forward(echo_server) == url
        assert await _echo(port, b"after") == b"after"
    finally:
        await pod.close()


async def test_frozen_link_is_noticed_by_keepalive(sshd: Sshd) -> None:
    """A link that goes silent (no FIN, no RST) is declared lost after the keepalives go
    unanswered: interval x (count + 1), about 4 s with the defaults (1 s x 3)."""
    interval, count = 0.5, 3
    pod = sshd.make_pod(keepalive_interval_s=interval, keepalive_count_max=count)
    await pod.connect()
    frozen = sshd.session_pids()
    assert frozen
    try:
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        await pod.wait_for_state(ConnState.LOST, ConnState.RECONNECTING, timeout=10)
        elapsed = time.monotonic() - start
        assert interval * count <= elapsed < interval * (count + 1) + 1.0
        # The listener still answers, so the new connection comes up at once.
        await pod.wait_for_state(ConnState.CONNECTED, timeout=5)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await pod.close()


async def test_stream_raises_when_the_link_dies_and_its_command_ends(
    sshd: Sshd, tmp_path: Path
) -> None:
    """A streaming command (like the agent) writing into a dead session dies of EPIPE."""
    pidfile = tmp_path / "pid"
    pod = sshd.make_pod()
    await pod.connect()
    try:
        script = 'echo $$ > "$1"; while :; do echo tick; sleep 0.05; done'
        lines = pod.stream(["sh", "-c", script, "sh", str(pidfile)])
        assert await anext(lines) == "tick"
        pid = int(pidfile.read_text())
        sshd.stop()
        with pytest.raises(PodConnectionLost):
            while True:
                await asyncio.wait_for(anext(lines), 5)
        await eventually(lambda: not pid_alive(pid), what="streamed command dies with its session")
    finally:
        await pod.close()


async def test_forward_listens_on_127_0_0_1_only(ssh_pod: SSHPod, echo_server: int) -> None:
    port = int((await ssh_pod.forward(echo_server)).rsplit(":", 1)[1])
    assert await _echo(port, b"x") == b"x"
    # Another loopback address reaches any socket bound to 0.0.0.0, but not ours.
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.2", port)


async def test_forward_to_a_closed_pod_port_closes_the_client(ssh_pod: SSHPod) -> None:
    # Bound but not listening: connections are refused and no one else can take the port.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        url = await ssh_pod.forward(placeholder.getsockname()[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            writer.close()
    assert ssh_pod.state is ConnState.CONNECTED


async def _echo(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(data)), 5)
    finally:
        writer.close()


async def test_follow_restarts_the_command_after_a_reconnect(sshd: Sshd, reaper: list[int]) -> None:
    pod = sshd.make_pod()
    await pod.connect()
    try:
        lines = pod.follow(["sh", "-c", "echo $$; exec sleep 300"])
        first = int(await anext(lines))
        reaper.append(first)
        sshd.stop()
        await pod.wait_for_state(ConnState.RECONNECTING, timeout=5)
        sshd.start()
        second = int(await asyncio.wait_for(anext(lines), 10))
        reaper.append(second)
        assert second != first and pid_alive(second)
        assert pod.state is ConnState.CONNECTED
        await lines.aclose()
        await eventually(lambda: not pid_alive(second))
    finally:
        await pod.close()


async def test_close_ends_streams_and_follow_raises(ssh_pod: SSHPod, reaper: list[int]) -> None:
    lines = ssh_pod.follow(["sh", "-c", "echo $$; exec sleep 300"])
    pid = int(await anext(lines))
    reaper.append(pid)
    await ssh_pod.close()
    with pytest.raises(PodConnectionLost, match="closed"):
        await asyncio.wait_for(anext(lines), 5)
    await eventually(lambda: not pid_alive(pid), what="a silent streamed command ends with close()")


async def test_changed_host_key_during_reconnect_is_refused(
    sshd: Sshd, tmp_path: Path, spare_key: tuple[Path, str]
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_pubkey}\n")
    pod = sshd.make_pod(known_hosts=str(known), accept_new_host_key=True)
    await pod.connect()
    try:
        # While the link is down the recorded key stops matching (a re-created pod, or
        # someone in the middle): the reconnect must refuse, not record.
        sshd.stop()
        await pod.wait_for_state(ConnState.RECONNECTING, timeout=5)
        recorded = f"[127.0.0.1]:{sshd.port} {spare_key[1]}\n"
        known.write_text(recorded)
        sshd.start()
        await eventually(lambda: "CHANGED" in (pod.last_error or ""), what="refused as changed")
        assert pod.state is ConnState.RECONNECTING
        assert known.read_text() == recorded
    finally:
        await pod.close()
    assert pod.state is ConnState.CLOSED


async def test_bare_host_entry_is_port_22_only(
    sshd: Sshd, tmp_path: Path, spare_key: tuple[Path, str]
) -> None:
    """Providers put many pods on one IP: a key on record for the bare IP (port 22) says
    nothing about the pod on another port, which is unknown, not CHANGED, and recordable."""
    known = tmp_path / "known_hosts"
    bare = f"127.0.0.1 {spare_key[1]}\n"
    known.write_text(bare)
    pod = sshd.make_pod(known_hosts=str(known))
    with pytest.raises(HostKeyError, match="is unknown"):
        await pod.connect()
    pod = sshd.make_pod(known_hosts=str(known), accept_new_host_key=True)
    await pod.connect()
    await pod.close()
    assert known.read_text() == bare + f"[127.0.0.1]:{sshd.port} {sshd.host_pubkey}\n"


async def test_bare_host_entry_with_the_right_key_does_not_trust_another_port(
    sshd: Sshd, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"127.0.0.1 {sshd.host_pubkey}\n")
    pod = sshd.make_pod(known_hosts=str(known))
    with pytest.raises(HostKeyError, match="is unknown"):
        await pod.connect()


async def test_known_hosts_that_is_a_fifo_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    fifo = tmp_path / "known_hosts"
    os.mkfifo(fifo)
    pod = sshd.make_pod(known_hosts=str(fifo))
    with pytest.raises(HostKeyError, match="known_hosts: is a FIFO"):
        await pod.connect()


async def test_close_during_a_reconnect_ends_even_if_the_attempt_eats_the_cancel(
    sshd: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.11's asyncio.wait_for (inside asyncssh.connect) returns the attempt's own
    outcome, not CancelledError, when the attempt ends as the cancel arrives: the
    reconnect loop must not take that for one more failed attempt and go on (a Controller
    closed over SSH after its sshd died hung until the test's timeout this way)."""
    pod = sshd.make_pod()
    await pod.connect()
    attempting = asyncio.Event()
    eaten: list[bool] = []

    async def refused_as_the_cancel_came(**_kwargs: object) -> asyncssh.SSHClientConnection:
        attempting.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if eaten:
                raise
            eaten.append(True)  # the first cancel is lost, as in the race above
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(asyncssh, "connect", refused_as_the_cancel_came)
    sshd.stop()
    await pod.wait_for_state(ConnState.RECONNECTING, timeout=5)
    await asyncio.wait_for(attempting.wait(), 5)
    closing = asyncio.create_task(pod.close())
    done, _ = await asyncio.wait({closing}, timeout=10)
    if not done:
        closing.cancel()  # the loop's teardown cancels the reconnect loop left behind
    assert done, "close() still waits for the reconnect loop after 10 s"
    assert eaten and pod.state is ConnState.CLOSED
