"""vllm serve argv parsing, the published recipes in the example config, memory reserved."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrtui.config import ModelConfig, load_config
from ocrtui.published import SERVE_RECIPES
from ocrtui.vllm.flags import Reservation, extra_reserved_mib, recipe_for, serve_options
from ocrtui.vllm.plan import serve_argv

EXAMPLE = Path(__file__).resolve().parents[2] / "ocrtui.example.toml"


def example_models() -> dict[str, ModelConfig]:
    cfg = load_config(EXAMPLE)
    return {m.name: m for m in cfg.models}


def test_example_config_serves_lighton_the_published_way_and_glm_without_mtp() -> None:
    cfg = load_config(EXAMPLE)
    glm, lighton = (m for m in cfg.ordered_models())
    glm_argv = serve_argv(cfg.pod.vllm_command, glm)
    lighton_argv = serve_argv(cfg.pod.vllm_command, lighton)
    for m in (glm, lighton):
        recipe = recipe_for(m)
        assert recipe is not None and recipe.profile == m.profile
    lighton_recipe = recipe_for(lighton)
    assert lighton_recipe is not None
    assert lighton_argv[-len(lighton_recipe.argv.value) :] == list(lighton_recipe.argv.value)
    # The makers' MTP recipe stays in published.py; the example serves what starts on
    # vLLM 0.26-0.29 (MTP on or off is measured, not assumed).
    glm_opts = serve_options(glm_argv)
    glm_recipe = recipe_for(glm)
    assert "--speculative-config" not in glm_opts
    assert glm_recipe is not None and "--speculative-config" in glm_recipe.argv.value
    assert glm_opts["--max-model-len"] == "24576"
    assert glm.effective_max_tokens() == 8192 < glm.max_model_len  # type: ignore[operator]
    lo = serve_options(lighton_argv)
    assert lo["--limit-mm-per-prompt"] == '{"image": 1}'
    assert lo["--mm-processor-cache-gb"] == "0"
    assert lo["--enable-prefix-caching"] is False
    # The seed's ports, names and utilizations stay.
    assert [(m.name, m.port, m.gpu_memory_utilization) for m in (glm, lighton)] == [
        ("glm-ocr", 8000, 0.40),
        ("lighton-ocr", 8001, 0.55),
    ]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--max_model_len=4096"], {"--max-model-len": "4096"}),
        (["--port", "8000", "--enforce-eager"], {"--port": "8000", "--enforce-eager": True}),
        (["--no-enable-prefix-caching", "x"], {"--enable-prefix-caching": False}),
        (
            [
                "--speculative-config.method",
                "mtp",
                "--speculative-config.num_speculative_tokens",
                "1",
            ],
            {"--speculative-config": {"method": "mtp", "num_speculative_tokens": 1}},
        ),
        (["--limit-mm-per-prompt.image", "1"], {"--limit-mm-per-prompt": {"image": 1}}),
        (["vllm", "serve", "org/m", "--port", "1", "--port", "2"], {"--port": "2"}),
    ],
)
def test_serve_options(argv: list[str], expected: dict[str, object]) -> None:
    assert serve_options(argv) == expected


def test_recipes_match_by_model_id_then_profile() -> None:
    glm = example_models()["glm-ocr"]
    assert recipe_for(glm) is SERVE_RECIPES[0]
    local_path = glm.model_copy(update={"model": "/models/my-ocr"})
    assert recipe_for(local_path) is SERVE_RECIPES[0]  # by its glm-ocr profile
    generic = local_path.model_copy(update={"profile": "generic"})
    assert recipe_for(generic) is None


def test_processor_cache_is_counted_as_host_ram() -> None:
    models = example_models()
    assert extra_reserved_mib(models["lighton-ocr"]) == []  # the card's --mm-processor-cache-gb 0
    assert extra_reserved_mib(models["glm-ocr"]) == [
        Reservation(
            "multi-modal processor cache: 4 GiB of host RAM x 1 API server "
            "(--mm-processor-cache-gb 0 turns it off)",
            4096,
            "host",
        )
    ]
    two = models["glm-ocr"].model_copy(
        update={"extra_args": ("--mm-processor-cache-gb=1.5", "--api-server-count", "2")}
    )
    (r,) = extra_reserved_mib(two)
    assert (r.mib, r.memory) == (4608, "host")
    assert "1.5 GiB of host RAM x 3 processes (2 API servers + 1 engine)" in r.reason
    engines = models["glm-ocr"].model_copy(update={"extra_args": ("--data-parallel-size", "2")})
    (r,) = extra_reserved_mib(engines)
    assert r.mib == 8192 and "x 2 API servers" in r.reason
