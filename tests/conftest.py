"""Shared fixtures and helpers live in tests/plugins/ (one home each; no test module imports
another): the fixture plugins are registered here, the rest are plain helper modules."""

pytest_plugins = [
    "tests.plugins.sshd",
    "tests.plugins.sim",
    "tests.plugins.reaper",
    "tests.plugins.run_dirs",
    "tests.plugins.compare_inputs",
    "tests.plugins.fake_servers",
    "tests.plugins.transports",
    "tests.plugins.sim_pod",
    "tests.plugins.tui_app",
    "tests.plugins.real_vllm",
    "tests.plugins.workers",
]
