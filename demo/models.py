"""Models are loaded once per process and shared by every column, user and tab."""

from __future__ import annotations

import threading

_MODELS: dict = {}
_LOCKS: dict = {}
_GUARD = threading.Lock()


def shipped(kind: str = "diffusion") -> list[str]:
    """Names of the shipped models of one kind: ``diffusion`` (dLLMs) or ``causal`` (verifiers, AR
    drafters)."""
    import json

    from dllm.models.loading import _CAUSAL_LM_TYPES
    from dllm.zoo import shipped_models

    out = []
    for name, path in shipped_models().items():
        model_type = str(json.loads((path / "config.json").read_text()).get("model_type", "")).lower()
        is_causal = model_type in _CAUSAL_LM_TYPES
        if is_causal == (kind == "causal"):
            out.append(name)
    return out


def get(name: str, device: str = "cpu"):
    """The loaded model for a shipped name, folder or hub id (loaded on first use, then shared)."""
    import dllm

    name = (name or "").strip()
    if not name:
        raise ValueError("no model given: pick a shipped model or type a folder / hub id")
    key = (name, str(device))
    if key in _MODELS:
        return _MODELS[key]
    with _GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:  # one load per model; other models load in parallel
        if key not in _MODELS:
            _MODELS[key] = dllm.load(name, device=device)
    return _MODELS[key]


def diffusion(name: str, device: str = "cpu"):
    """A loaded dLLM; ValueError when the name is an autoregressive model."""
    import dllm

    model = get(name, device)
    if not isinstance(model, dllm.DiffusionModel):
        raise ValueError(
            f"{name!r} is an autoregressive model; a column needs a diffusion LM "
            f"({', '.join(shipped('diffusion'))}, a folder or hub id)"
        )
    return model


def loaded() -> list[str]:
    return sorted(name for name, _ in _MODELS)


def preload(names, device: str = "cpu") -> threading.Thread:
    """Load models in a background thread (so the first click does not wait for them)."""

    def work():
        for name in names:
            try:
                get(name, device)
            except Exception:  # noqa: BLE001 — a column reports the error when it is used
                pass

    thread = threading.Thread(target=work, name="dllm-demo-preload", daemon=True)
    thread.start()
    return thread
