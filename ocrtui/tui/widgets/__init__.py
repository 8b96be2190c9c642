"""Dashboard widgets: each renders from status dataclasses and updates only what changed."""
