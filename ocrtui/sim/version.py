"""The version the simulator reports: the real vLLM release it is held to (see
ocrtui/sim/fidelity.py), marked as simulated."""

VLLM_VERSION = "0.32.0+ocrtui.sim"
