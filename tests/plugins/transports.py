"""The two ways to reach a pod, for tests that run on both: ``transport`` ("local" or
"ssh", a parameter) and ``pod``, a connected LocalPod or SSHPod (to the real sshd of
tests/plugins/sshd.py) for it, closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ocrtui.pod import Pod
from ocrtui.pod.local import LocalPod


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def pod(transport: str, request: pytest.FixtureRequest) -> AsyncIterator[Pod]:
    p: Pod = LocalPod() if transport == "local" else request.getfixturevalue("sshd").make_pod()
    await p.connect()
    try:
        yield p
    finally:
        await p.close()
