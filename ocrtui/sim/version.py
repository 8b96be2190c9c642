"""The version the simulator reports: vLLM's newest API it imitates, marked as simulated."""

VLLM_VERSION = "0.33.0+ocrtui.sim"
