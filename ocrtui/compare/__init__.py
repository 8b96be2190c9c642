"""The comparison engine: documents in, both models streamed, scored results out.

Shared by the dashboard and the headless CLI: :func:`ocrtui.compare.launch.start_comparison`
returns a :class:`~ocrtui.compare.runner.CompareRun` whose typed events either can consume.
"""
