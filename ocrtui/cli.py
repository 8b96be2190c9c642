"""Command-line entry points. Parsing lives here; each command's work lives in its layer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ocrtui import __version__
from ocrtui.config import Config, Fleet, find_config, load_fleet
from ocrtui.errors import ConfigError, InputError, OcrtuiError

USAGE_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ocrtui",
        description="Terminal dashboard for comparing OCR models served by vLLM on GPU pods.",
    )
    p.add_argument("--version", action="version", version=f"ocrtui {__version__}")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", metavar="FILE", help="config file (default: lookup order)")
    src.add_argument(
        "--demo", action="store_true", help="the built-in demo pod (local, simulated GPU)"
    )
    p.add_argument(
        "--readonly", action="store_true", help="dashboard: no action that changes the pod"
    )
    pod_help = "one pod of a [[pods]] config (default: every pod; the dashboard: the fleet)"
    p.add_argument("--pod", metavar="NAME", help=pod_help)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def pod_option(command: argparse.ArgumentParser) -> None:
        command.add_argument("--pod", metavar="NAME", default=argparse.SUPPRESS, help=pod_help)

    d = sub.add_parser("dashboard", help="the dashboard (the default command)")
    pod_option(d)
    d.add_argument("--readonly", action="store_true", default=argparse.SUPPRESS)

    demo = sub.add_parser(
        "demo", help="the dashboard on the demo pod, starting the demo servers if down"
    )
    demo.add_argument("--screenshot", metavar="FILE.svg", help="save a screenshot headless, exit")
    demo.add_argument(
        "--compare", action="store_true", help="with --screenshot: run a sample comparison first"
    )
    demo.add_argument("--readonly", action="store_true", default=argparse.SUPPRESS)
    demo.add_argument(
        "--pods",
        type=int,
        choices=[1, 2],
        default=1,
        help="2: the demo's servers on two pods of this machine, one each (the fleet screen)",
    )

    st = sub.add_parser("status", help="one snapshot of GPU, processes and models")
    st.add_argument("--json", action="store_true", help="machine-readable JSON")
    pod_option(st)

    force_help = "start even where the preflight refuses (free memory, port); says what it skipped"
    up = sub.add_parser(
        "up",
        help="start all models and [[services]] in start order, each wave once the one before "
        "is ready",
    )
    up.add_argument("--force", action="store_true", help=force_help)
    pod_option(up)
    down = sub.add_parser(
        "down", help="stop all models and [[services]] in reverse order (whole process trees)"
    )
    pod_option(down)

    r = sub.add_parser(
        "restart",
        help="a model: stop, clear orphans, wait for VRAM, preflight, start; a service: stop, "
        "start",
    )
    r.add_argument("name", help="a served model name or a [[services]] name")
    r.add_argument("--force", action="store_true", help=force_help)

    sl = sub.add_parser(
        "sleep",
        help="put a model to sleep (vLLM's sleep mode): its GPU memory given back, its "
        "requests in flight aborted",
    )
    sl.add_argument("name", help="a served model name")
    sl.add_argument(
        "--level",
        type=int,
        choices=[1, 2],
        default=1,
        help="1: weights offloaded to host memory (default); 2: discarded, reloaded on wake",
    )
    wk = sub.add_parser("wake", help="wake a sleeping model (its memory taken back)")
    wk.add_argument("name", help="a served model name")

    ex = sub.add_parser(
        "export", help="serve the pods' metrics (OpenMetrics) until stopped, no dashboard"
    )
    ex.add_argument(
        "--listen", metavar="HOST:PORT", required=True, help="e.g. 127.0.0.1:9464 (loopback)"
    )
    pod_option(ex)
    ex.add_argument(
        "--allow-remote",
        action="store_true",
        help="listen on a non-loopback address too (the metrics name the pod's processes)",
    )

    watch = sub.add_parser(
        "watch",
        help="the watchdog until stopped: restart a crashed or long-unhealthy model or service, "
        "with a crash-loop guard ([watchdog])",
    )
    pod_option(watch)

    adopt = sub.add_parser(
        "adopt",
        help="list the vLLM servers on the pod that no [[models]] names, each with a "
        "[[models]] block to paste",
    )
    pod_option(adopt)

    pw = sub.add_parser("pod", help="the pod's power state, from the provider ([pod.provider])")
    pw.add_argument("action", choices=["status", "start"], help="ask the state / start the pod")
    pod_option(pw)

    c = sub.add_parser("compare", help="compare the models on documents")
    c.add_argument("docs", nargs="*", metavar="DOC", help="PDFs, images or folders")
    c.add_argument(
        "--suite",
        metavar="PATH",
        help="suite file (TOML), olmOCR-bench JSONL file or Omni Parse Bench folder; "
        "default: the sample suite",
    )
    c.add_argument("--pages", metavar="SPEC", help="page spec, e.g. 1-3,7,10-")
    c.add_argument("--reference", choices=["text-layer"], help="take references from the PDF")
    c.add_argument("--password", help="password for encrypted PDFs")
    c.add_argument("--out", metavar="DIR", help="run directory (default: runs/<timestamp>)")
    c.add_argument("--resume", metavar="DIR", help="continue a run, skipping finished pages")
    c.add_argument("--concurrency", type=int, metavar="N", help="throughput phase concurrency")
    c.add_argument("--schedule", choices=["sequential", "parallel"])
    c.add_argument(
        "--sweep",
        action="store_true",
        help="throughput also at compare.sweep's concurrencies (default 1, 5, 16, 32, 64)",
    )
    c.add_argument(
        "--variants",
        metavar="LIST",
        help="also send each page degraded: clean,scan,skew,blur,jpeg,lowres (documents only)",
    )
    c.add_argument(
        "--models", metavar="NAMES", help="comma-separated models and [[api_arms]] to compare"
    )
    c.add_argument(
        "--serve-sweep",
        metavar="FILE",
        help="restart one model once per flag set of FILE (TOML), one arm each (headless)",
    )
    c.add_argument("--headless", action="store_true", help="progress and summary on stdout")
    c.add_argument(
        "--auto-restart",
        action="store_true",
        help="restart a model whose server crashed mid-run (at most 3 times), then go on",
    )

    rep = sub.add_parser("report", help="write report.html for a run directory (no pod needed)")
    rep.add_argument("run_dir", metavar="RUN_DIR", help="a comparison's run directory")
    rep.add_argument(
        "--out", metavar="FILE", help="where to write it (default RUN_DIR/report.html)"
    )
    rep.add_argument(
        "--against",
        metavar="OTHER_RUN_DIR",
        help="instead, RUN_DIR beside OTHER_RUN_DIR: RUN_DIR/against.md and against.html",
    )

    sim = sub.add_parser(
        "sim-vllm", help="the vLLM-compatible simulator", add_help=False, prefix_chars="\0"
    )
    sim.add_argument("sim_args", nargs=argparse.REMAINDER)
    return p


def _fleet(args: argparse.Namespace) -> Fleet:
    """The config's pods, narrowed to ``--pod NAME`` when given."""
    if args.demo or args.command == "demo":
        from ocrtui.sim.demo import demo_pods

        pods = demo_pods(getattr(args, "pods", 1))
        return Fleet(pods, listed=len(pods) > 1).only(args.pod)
    path = find_config(args.config)
    if path is None:
        raise ConfigError(
            "no config found (--config FILE, $OCRTUI_CONFIG, ./ocrtui.toml or the user config "
            "dir); try `ocrtui demo` or copy ocrtui.example.toml"
        )
    return load_fleet(path).only(args.pod)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim-vllm"]:
        # The simulator parses `vllm serve` flags itself, exactly as vLLM would.
        from ocrtui.sim.cli import main as sim_main

        return sim_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except OcrtuiError as exc:
        print(f"ocrtui: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command or "dashboard"
    if command == "report":  # reads the run directory only: no config, no pod
        from pathlib import Path

        if args.against:
            from ocrtui.compare.against_report import write_against

            if args.out:
                raise InputError("--against writes RUN_DIR/against.md and .html: drop --out")
            for path in write_against(Path(args.run_dir), Path(args.against)):
                print(path)
            return 0
        from ocrtui.compare.report_html import write_html_report

        out = write_html_report(Path(args.run_dir), Path(args.out) if args.out else None)
        print(out)
        return 0
    fleet = _fleet(args)
    demo = bool(args.demo or command == "demo")
    if command in ("dashboard", "demo"):
        from ocrtui.tui.app import run_dashboard, save_screenshot_headless

        if command == "demo" and args.screenshot:
            return save_screenshot_headless(fleet, args.screenshot, compare=args.compare)
        return run_dashboard(fleet, readonly=args.readonly, demo=demo)
    if command == "compare":
        from ocrtui.compare.cli import compare_command

        return compare_command(fleet, args, demo=demo)
    if command == "pod":
        from ocrtui.pod.provider import provider_command

        return provider_command(_one_pod(fleet), args.action)
    from ocrtui import headless

    if command == "status":
        return headless.status_command(fleet, as_json=args.json, demo=demo)
    if command == "up":
        return headless.up_command(fleet, demo=demo, force=args.force)
    if command == "down":
        return headless.down_command(fleet, demo=demo)
    if command == "export":
        from ocrtui.config import parse_listen

        address = parse_listen(args.listen, allow_remote=args.allow_remote)
        return headless.export_command(fleet, address, demo=demo)
    if command == "adopt":
        return headless.adopt_command(fleet, demo=demo)
    if command == "watch":
        return headless.watch_command(fleet, demo=demo)
    if command == "restart":
        return headless.restart_command(fleet, args.name, demo=demo, force=args.force)
    if command == "sleep":
        return headless.sleep_command(fleet, args.name, args.level, demo=demo)
    if command == "wake":
        return headless.wake_command(fleet, args.name, demo=demo)
    raise AssertionError(command)


def _one_pod(fleet: Fleet) -> Config:
    if fleet.several:
        raise ConfigError(f"name the pod: --pod NAME ({', '.join(fleet.names)})")
    return fleet.pods[0]
