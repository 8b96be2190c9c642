"""vLLM-compatible simulator with CPU OCR engines, the simulated GPU, and the demo pod.

`ocrtui sim-vllm serve MODEL [vllm flags] [--engine rapidocr|tesseract|synthetic]
[--sim-*]` stands in for `vllm serve` (user docs: docs/sim.md). Modules:

    cli.py          main(argv): serve, --version; vLLM's usage errors (exit 2)
    args.py         parse_serve_args(argv) -> ServeArgs: vLLM's flags and error texts,
                    simulator flags
    api_server.py   the launching process: binds the port, spawns the EngineCore, waits for
                    it, then serves starlette through uvicorn; EngineClient tracks requests
                    and feeds metrics.py; SIGTERM stops the engine first, then HTTP
    engine_core.py  the child (python -m ocrtui.sim.engine_core --fd N, title
                    VLLM::EngineCore, same process group): startup stages, memory,
                    scheduler (at most --max-num-seqs running, FIFO waiting), OCR in worker
                    threads; outlives a SIGKILLed parent holding memory
    ipc.py          length-prefixed pickle frames over a socketpair (protocol in its docstring)
    engines.py      rapidocr, tesseract (chi_sim+eng, OMP_THREAD_LIMIT=1), synthetic
    memory.py       GPU backends (simulated dir, CUDA via torch, virtual) and vLLM's
                    free-memory / KV-cache checks with exact texts
    model_numbers.py  per-model numbers (weights, KV per token, default context, image
                    tokens), tokenizer approximation
    metrics.py      /metrics families with vLLM 0.33 names, labels and buckets
    vlog.py         "(Role pid=N) LEVEL MM-DD HH:MM:SS [file.py:N] msg" lines, whole-line
                    writes
    gpu.py          the simulated GPU directory (its format, a contract with the agent, is
                    in its docstring); hold() also prunes files of dead holders. The pod
                    config's `sim_gpu` names the directory; the agent is started with
                    `--sim-gpu DIR` for such a pod.
    demo.py         demo_config() -> Config: local pod, simulated A40 in the user state dir,
                    demo-rapidocr (18000) and demo-tesseract (18001)

Test fixtures for every layer live in `tests/plugins/sim.py` (`sim_gpu`, `vllm_shim`,
`sim_servers`; module-scope use through `SimServers`).
"""
