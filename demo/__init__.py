"""The Gradio demo (``dllm demo``): decoding configurations side by side, live, and a speculative tab.

``render`` (HTML), ``widgets`` (widget specs from the plugins' config dataclasses), ``runner`` (what a
column runs), ``models`` (loaded once per process), ``examples`` (task prompts and scorers) need no
Gradio; ``app`` builds the page (``pip install -e ".[demo]"``).
"""

from __future__ import annotations


def build_app(**kwargs):
    from .app import build_app as _build

    return _build(**kwargs)


def launch(**kwargs):
    from .app import launch as _launch

    return _launch(**kwargs)


__all__ = ["build_app", "launch"]
