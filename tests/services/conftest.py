"""Fixtures for the services tests: the same tests run on LocalPod and through real sshd."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ocrtui.pod import Pod
from ocrtui.pod.local import LocalPod


@pytest.fixture(params=["local", "ssh"])
async def pod(request: pytest.FixtureRequest) -> AsyncIterator[Pod]:
    p: Pod = LocalPod() if request.param == "local" else request.getfixturevalue("sshd").make_pod()
    await p.connect()
    try:
        yield p
    finally:
        await p.close()
