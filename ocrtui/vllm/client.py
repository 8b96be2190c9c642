"""HTTP probes of one vLLM server: ``/health``, ``/v1/models`` and ``/metrics``; and sleep
mode's development endpoints (``/sleep``, ``/wake_up``, ``/collective_rpc`` reload_weights),
served only with ``VLLM_SERVER_DEV_MODE=1``.

One :class:`httpx.AsyncClient` per server, kept for the server's lifetime: building one
costs about 57 ms (SSL context), more than a probe itself. The API key travels only as a
header on ``/v1`` (vLLM guards only that prefix) and never appears in a repr or an error.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ocrtui.vllm.metrics import VllmMetrics, parse_metrics


@dataclass(frozen=True)
class Health:
    """One ``/health`` probe: ``status`` None when no HTTP answer came (refused, timeout)."""

    status: int | None
    latency_ms: float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def refused(self) -> bool:
        """Nothing listens yet: vLLM binds its port early but listens only once ready."""
        return self.status is None and self.error == "connection refused"


@dataclass(frozen=True)
class ModelCard:
    id: str
    root: str | None
    max_model_len: int | None
    parent: str | None = None


def parse_models(body: str | bytes | dict[str, Any]) -> list[ModelCard]:
    """The cards of a ``/v1/models`` body; raises ValueError on anything else."""
    data = json.loads(body) if isinstance(body, str | bytes) else body
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError("not a /v1/models list: no 'data' array")
    cards = []
    for item in data["data"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ValueError("not a /v1/models list: an entry has no string 'id'")
        mml = item.get("max_model_len")
        cards.append(
            ModelCard(
                id=item["id"],
                root=item.get("root"),
                max_model_len=mml if isinstance(mml, int) else None,
                parent=item.get("parent"),
            )
        )
    return cards


PROBE_TIMEOUT_S = 2.0  # each probe's HTTP timeout (a stopped server: /health times out)


class VllmClient:
    def __init__(
        self, base_url: str, *, api_key: str | None = None, timeout: float = PROBE_TIMEOUT_S
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, trust_env=False)

    def __repr__(self) -> str:
        return f"VllmClient({self.base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def health(self) -> Health:
        t0 = time.perf_counter()
        try:
            r = await self._http.get("/health")
        except httpx.ConnectError:
            return Health(None, None, "connection refused")
        except httpx.TimeoutException:
            return Health(None, None, "timeout")
        except httpx.HTTPError as exc:
            return Health(None, None, type(exc).__name__)
        return Health(r.status_code, (time.perf_counter() - t0) * 1000.0)

    async def models(self) -> list[ModelCard]:
        """Raises httpx.HTTPError (or HTTPStatusError, e.g. 401 with a wrong key)."""
        r = await self._http.get("/v1/models", headers=self._auth)
        r.raise_for_status()
        return parse_models(r.content)

    async def version(self) -> str | None:
        """GET /version: the server's vLLM version (no key needed), None when the body has
        none. Raises httpx.HTTPError."""
        r = await self._http.get("/version")
        r.raise_for_status()
        try:
            body = r.json()
        except ValueError:
            return None
        value = body.get("version") if isinstance(body, dict) else None
        return value if isinstance(value, str) else None

    async def metrics(self) -> VllmMetrics:
        r = await self._http.get("/metrics")
        r.raise_for_status()
        return parse_metrics(r.text)

    # Sleep mode: each raises httpx.HTTPError (HTTPStatusError 404 without dev mode).

    async def sleep(self, level: int) -> None:
        """POST /sleep?level=N: requests in flight are aborted, the scheduler pauses."""
        r = await self._http.post("/sleep", params={"level": level}, headers=self._auth)
        r.raise_for_status()

    async def wake_up(self) -> None:
        r = await self._http.post("/wake_up", headers=self._auth)
        r.raise_for_status()

    async def reload_weights(self) -> None:
        """The weights a level-2 sleep discarded, loaded again (``collective_rpc``)."""
        r = await self._http.post(
            "/collective_rpc", json={"method": "reload_weights"}, headers=self._auth
        )
        r.raise_for_status()
