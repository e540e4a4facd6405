"""``transformers`` names imported on first use, under one lock.

``transformers`` resolves its top-level names lazily, and that resolution is not thread-safe: two
threads asking for ``AutoModelForCausalLM`` at once in a fresh process can make one of them fail
with ``ImportError: cannot import name ...``. Every lazy import of ``transformers`` in dllm goes
through ``from_transformers``, so concurrent calls (a ``Batcher``, threads sharing a drafter) import
it once, one after the other.
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()


def from_transformers(*names: str):
    """``transformers.<name>`` for each name (one object for one name, else a tuple)."""
    with _LOCK:
        import transformers

        found = tuple(getattr(transformers, name) for name in names)
    return found[0] if len(found) == 1 else found
