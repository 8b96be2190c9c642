"""The pod interface over local processes: the demo pod, tests, and running on the pod itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, Sequence

from ocrtui.pod.base import CommandResult, ConnState, Pod

_STREAM_LINE_LIMIT = 16 * 1024 * 1024


class LocalPod(Pod):
    def __init__(self, label: str = "local") -> None:
        super().__init__(label)

    async def connect(self) -> None:
        self._set_state(ConnState.CONNECTED)

    async def close(self) -> None:
        self._set_state(ConnState.CLOSED)

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(input.encode() if input is not None else None), timeout
            )
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return CommandResult(
            tuple(argv), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def stream(
        self, argv: Sequence[str], *, input: str | None = None
    ) -> AsyncGenerator[str, None]:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            # Own process group, so closing the stream ends the command and its children.
            start_new_session=True,
            # One agent sample lists every vLLM-looking process: lines can pass 64 KiB.
            limit=_STREAM_LINE_LIMIT,
        )
        try:
            if input is not None:
                assert proc.stdin is not None
                proc.stdin.write(input.encode())
                await proc.stdin.drain()
                proc.stdin.close()
            assert proc.stdout is not None
            async for raw in proc.stdout:
                yield raw.decode(errors="replace").rstrip("\n")
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
            await proc.wait()

    async def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> str:
        return f"http://{remote_host}:{remote_port}"
