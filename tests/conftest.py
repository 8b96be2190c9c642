"""Shared fixtures: each plugin module is owned by the layer that needs it."""

pytest_plugins = [
    "tests.plugins.sshd",
    "tests.plugins.sim",
    "tests.plugins.reaper",
    "tests.plugins.run_dirs",
    "tests.plugins.real_vllm",
]
