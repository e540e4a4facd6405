"""The Learn2PD confidence filter: the learned model, its files and its features.

Shared by the sampler that uses a filter (``samplers/learn2pd.py``, ``dllm.samplers.get("learn2pd")``)
and the recipe that trains one (``python -m dllm.zoo.learn2pd_train``), so that the trainer, a
module of the core, imports no plugin module. ``ConfidenceFilter`` maps a block's confidences
``[B, K]`` to per-position logits ("is this prediction already final?"); ``save`` / ``load`` write
and read ``filter.safetensors`` + ``filter.json``; ``weights_fingerprint`` names the checkpoint
weights a filter was trained on; ``block_confidences`` reads the features off a ``StepView``;
``DEFAULT_THRESHOLD`` is the acceptance threshold per model family (the paper's settings). The
method and its source are described in ``samplers/learn2pd.py``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from dllm.state import StepView

DEFAULT_THRESHOLD = {False: 0.96, True: 0.9}  # LLaDA / Dream (shifted logits)


class ConfidenceFilter(nn.Module):
    """Block confidences [B, K] -> per-position logits [B, K] ("is this prediction final?")."""

    def __init__(self, block_length: int = 32, hidden: int = 64):
        super().__init__()
        self.block_length, self.hidden = block_length, hidden
        self.net = nn.Sequential(nn.Linear(block_length, hidden), nn.ReLU(), nn.Linear(hidden, block_length))

    def forward(self, conf: torch.Tensor) -> torch.Tensor:
        return self.net(conf)

    def save(self, folder: Path, **meta) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "filter.safetensors")
        )
        info = {"block_length": self.block_length, "hidden": self.hidden, **meta}
        (folder / "filter.json").write_text(json.dumps(info, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path) -> "ConfidenceFilter":
        from safetensors.torch import load_file

        info = json.loads((Path(folder) / "filter.json").read_text())
        module = cls(info["block_length"], info["hidden"])
        module.load_state_dict(load_file(str(Path(folder) / "filter.safetensors")))
        module.meta, module.folder = info, Path(folder)
        return module.eval()


def weights_fingerprint(folder) -> str | None:
    """Short hash of a checkpoint folder's config.json and weights (size, first and last MiB of each)."""
    if folder is None or not Path(folder).is_dir():
        return None
    paths = [
        p for p in [Path(folder) / "config.json", *sorted(Path(folder).glob("*.safetensors"))] if p.exists()
    ]
    # Hashing reads ~2 MiB per file; every generate call checks it, so cache it per file state.
    return _fingerprint(tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths))


@functools.lru_cache(maxsize=64)
def _fingerprint(files: tuple) -> str:
    digest = hashlib.sha1()
    for path, size, _ in files:
        digest.update(f"{Path(path).name}:{size}".encode())
        with open(path, "rb") as fh:
            digest.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                digest.update(fh.read())
    return digest.hexdigest()[:12]


def block_confidences(view: StepView, size: int):
    """``(features [B, size], index, inside)``: confidences of the block's columns (1 past its end)."""
    index, inside = view.block_window(size)
    return torch.where(inside, view.conf.gather(1, index), 1.0).float(), index, inside
