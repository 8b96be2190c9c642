"""Serve sweep files (`ocrtui compare --serve-sweep FILE`): what a flag set serves, the errors
of bad files, the Pareto front and the report's rows. The sweep run itself, against the
simulator: tests/compare/test_serve_sweep_sim.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ocrtui.cli import main
from ocrtui.compare.arms import arm_record
from ocrtui.compare.launch import CompareRequest, resolve
from ocrtui.compare.profiles import render_target
from ocrtui.compare.render import RenderTarget
from ocrtui.compare.report import flag_set_points, flag_set_rows, pareto_front
from ocrtui.compare.results import ModelSummary, RunInfo, ServeSweepRecord, Summary, SweepPoint
from ocrtui.compare.serve_sweep import load_serve_sweep, without_option
from ocrtui.config import CompareConfig, Config, parse_config
from ocrtui.errors import ConfigError

MTP3 = '{"method": "mtp", "num_speculative_tokens": 3}'


def config() -> Config:
    return parse_config(
        {
            "pod": {"kind": "local"},
            "models": [
                {
                    "name": "glm-ocr",
                    "model": "zai-org/GLM-OCR",
                    "port": 8000,
                    "gpu_memory_utilization": 0.4,
                    "max_model_len": 24576,
                    "profile": "glm-ocr",
                    "extra_args": ["--speculative-config", MTP3, "--enforce-eager"],
                },
                {"name": "other", "model": "x/y", "port": 8001, "gpu_memory_utilization": 0.3},
            ],
        },
        "test config",
    )


def sweep_file(tmp_path: Path, text: str) -> str:
    p = tmp_path / "sweep.toml"
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_each_flag_set_is_an_arm_named_for_what_it_changes(tmp_path: Path) -> None:
    path = sweep_file(
        tmp_path,
        """
model = "glm-ocr"
concurrencies = [1, 4]
[[flags]]
speculative_tokens = 0
[[flags]]
speculative_tokens = 1
max_num_seqs = 32
[[flags]]
name = "wide"
max_num_seqs = 64
extra_args = ["--max-num-batched-tokens", "16384"]
""",
    )
    sweep = load_serve_sweep(path, config())
    assert [a.name for a in sweep.arms] == [
        "glm-ocr[no-mtp]",
        "glm-ocr[mtp=1 max_num_seqs=32]",
        "glm-ocr[wide]",
    ]
    assert sweep.concurrencies == (1, 4)
    no_mtp, mtp1, wide = (a.config for a in sweep.arms)
    # MTP off drops the configured --speculative-config; the rest of extra_args stays.
    assert no_mtp.extra_args == ("--enforce-eager",)
    assert mtp1.extra_args == (
        "--enforce-eager",
        "--speculative-config",
        json.dumps({"method": "mtp", "num_speculative_tokens": 1}),
    )
    assert mtp1.max_num_seqs == 32 and no_mtp.max_num_seqs == 16
    # Not set: as configured (MTP 3 stays); extra_args are appended.
    assert wide.extra_args == (
        "--speculative-config",
        MTP3,
        "--enforce-eager",
        "--max-num-batched-tokens",
        "16384",
    )
    assert {a.config.name for a in sweep.arms} == {"glm-ocr"}  # one served name, one port
    assert {a.config.port for a in sweep.arms} == {8000}
    written = sweep.record().to_json()["arms"]
    assert isinstance(written, list) and written[2] == {
        "name": "glm-ocr[wide]",
        "changes": {"max_num_seqs": 64, "extra_args": ["--max-num-batched-tokens", "16384"]},
    }


def test_speculative_config_is_found_in_every_spelling() -> None:
    argv = ["--a", "--speculative_config", MTP3, "--speculative-config=x", "--b", "1"]
    argv += ["--speculative-config.method", "mtp"]
    assert without_option(argv, "--speculative-config") == ["--a", "--b", "1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('model = "glm-ocr"\n', r"sweep\.toml: flags: Field required"),
        (
            'model = "nope"\n[[flags]]\nmax_num_seqs = 4\n',
            r"sweep\.toml: model: no \[\[models\]\] named 'nope' \(configured: glm-ocr, other\)",
        ),
        (
            'model = "glm-ocr"\n[[flags]]\nmax_num_seqs = 4\n[[flags]]\nmax_num_seq = 8\n',
            r"sweep\.toml: flags\[1\]\.max_num_seq: unknown key",
        ),
        (
            'model = "glm-ocr"\n[[flags]]\nspeculative_tokens = -1\n',
            r"sweep\.toml: flags\[0\]\.speculative_tokens: .*greater than or equal to 0",
        ),
        (
            'model = "glm-ocr"\n[[flags]]\nmax_num_seqs = 4\n[[flags]]\nmax_num_seqs = 4\n',
            r"sweep\.toml: flags\[1\]: the arm name 'glm-ocr\[max_num_seqs=4\]' is also "
            r"flags\[0\]'s: give one of them a name",
        ),
        (
            'model = "glm-ocr"\n[[flags]]\nmax_model_len = 100\n',
            r"sweep\.toml: flags\[0\]: max_tokens \(the glm-ocr profile's default\) 8192 is "
            r"more than max_model_len 100",
        ),
        (
            'model = "glm-ocr"\n[[flags]]\ngpu_memory_utilization = 1.5\n',
            r"sweep\.toml: flags\[0\]\.gpu_memory_utilization: must be in \(0, 1\], got 1\.5",
        ),
        (
            'model = "glm-ocr"\n[[flags]]\nname = "a b"\n',
            r"sweep\.toml: flags\[0\]\.name: letters, digits and \. _ = - only, got 'a b'",
        ),
        ('model = "glm-ocr"\nconcurrencies = [0]\n[[flags]]\n', r"concurrencies\[0\]: "),
        ("model = \n", r"sweep\.toml: .*TOML"),
    ],
)
def test_a_bad_sweep_file_is_one_line_naming_the_file_and_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_serve_sweep(sweep_file(tmp_path, text), config())


def test_a_missing_sweep_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml.*not found"):
        load_serve_sweep(str(tmp_path / "missing.toml"), config())


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    p = tmp_path / "ocrtui.toml"
    p.write_text(
        '[pod]\nkind = "local"\n[[models]]\nname = "glm-ocr"\nmodel = "zai-org/GLM-OCR"\n'
        'port = 8000\ngpu_memory_utilization = 0.4\nprofile = "glm-ocr"\n',
        encoding="utf-8",
    )
    return p


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "sweep.toml: flags[0].max_num_seqs: Input should be greater than or equal to 1"),
        (["--models", "glm-ocr"], "--serve-sweep runs its own arms: give it without --models"),
        (["--auto-restart"], "give it without --auto-restart"),
    ],
)
def test_compare_with_a_bad_sweep_exits_2_before_any_restart(
    config_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    path = sweep_file(tmp_path, 'model = "glm-ocr"\n[[flags]]\nmax_num_seqs = 0\n')
    argv = ["--config", str(config_file), "compare", "--headless", "--serve-sweep", path, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_pareto_front_keeps_the_points_nothing_beats() -> None:
    # (images/s, latency s)
    pts = [(1.0, 1.0), (4.0, 1.2), (3.0, 2.0), (4.0, 1.0), (0.5, 0.5), (4.0, 1.0)]
    assert pareto_front(pts) == [False, False, False, True, True, True]


def _summary(arms: dict[str, list[SweepPoint]]) -> Summary:
    models = {
        n: ModelSummary(pages_ok=1, cer=0.1 * i, sweep=tuple(pts))
        for i, (n, pts) in enumerate(arms.items())
    }
    record = ServeSweepRecord("glm", "s.toml", tuple((n, {"max_num_seqs": 1}) for n in arms))
    return Summary(RunInfo("d", tuple(arms)), models, {}, None, (), record)


def test_flag_set_rows_mark_the_front_and_carry_each_arm_s_accuracy() -> None:
    summary = _summary(
        {
            "glm[slow]": [SweepPoint(1, 1.0, 1.0, 1.1), SweepPoint(4, 1.1, 3.6, 3.9)],
            "glm[fast]": [SweepPoint(1, 1.6, 0.6, 0.7), SweepPoint(4, 5.0, 0.8, 0.9)],
        }
    )
    marked = [(fp.arm, fp.point.concurrency, fp.pareto) for fp in flag_set_points(summary)]
    assert marked == [
        ("glm[slow]", 1, False),
        ("glm[slow]", 4, False),
        ("glm[fast]", 1, True),
        ("glm[fast]", 4, True),
    ]
    rows = flag_set_rows(summary)
    assert [r[0] for r in rows] == ["glm[slow]", "", "glm[fast]", ""]
    assert rows[2][:8] == ["glm[fast]", "max_num_seqs 1", "1", "1.60 img/s", "0.60 s", "0.70 s",
                           "yes", "10.0 %"]  # fmt: skip
    # The summary written and read back has the sweep (report.html reads the file).
    again = Summary.from_json(json.loads(json.dumps(summary.to_json())))
    assert again.serve_sweep == summary.serve_sweep
    assert flag_set_rows(again) == rows


def test_a_flag_set_can_render_the_pages_smaller(tmp_path: Path) -> None:
    path = sweep_file(
        tmp_path,
        'model = "glm-ocr"\n[[flags]]\n[[flags]]\nrender_longest_side = 1024\n',
    )
    configured, smaller = load_serve_sweep(path, config()).arms
    assert (configured.name, smaller.name) == ("glm-ocr[as configured]", "glm-ocr[side=1024]")
    assert render_target(configured.config) == RenderTarget(dpi=200, max_side=3500)
    assert render_target(smaller.config) == RenderTarget(longest_side=1024)
    arm = arm_record(smaller.config, CompareConfig(), None)
    assert "longest side 1024 px" in arm.label
    assert arm.profile.render == {"longest_side": 1024}


def test_a_sweep_run_measures_its_levels_and_the_run_s_concurrency(tmp_path: Path) -> None:
    image = tmp_path / "page.png"
    Image.new("RGB", (100, 80), "white").save(image)
    path = sweep_file(
        tmp_path, 'model = "glm-ocr"\nconcurrencies = [8, 1]\n[[flags]]\nmax_num_seqs = 8\n'
    )
    setup = resolve(config(), CompareRequest(documents=(str(image),), serve_sweep=path))
    assert setup.concurrencies == (1, 5, 8)  # as with --sweep: the table's c5 row is measured
    assert [m.name for m in setup.models] == ["glm-ocr"]  # the one model restarted
    assert setup.info.models == ("glm-ocr[max_num_seqs=8]",)  # run.json names the arms
