"""Turning widget state into RenderArgs, shared by the window and the headless capture."""

from __future__ import annotations

from .renderer import RenderArgs


def build_args(widgets) -> RenderArgs:
    """Collect RenderArgs fields from widgets (each has `update_args(dict)`)."""
    fields = {}
    for w in widgets:
        w.update_args(fields)
    return RenderArgs(**fields)
