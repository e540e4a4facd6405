"""Learn2PD: a learned filter decides which predictions are already final (+ End-of-Text Prediction).

Idea: instead of a hand-set confidence threshold, a tiny model reads the confidences of every
position of the current block (decoded ones included) and predicts, per position, whether the
current prediction already equals the token the slow one-token-per-step decoder would end up
with. Masked positions it accepts (sigmoid > ``threshold``) are committed together with the most
confident one (progress). With ``end_of_text`` the EoTP rule (``samplers/eotp.py``) truncates the
EOS padding. Filters are trained per model (``python -m dllm.zoo.learn2pd_train MODEL``) and
shipped in ``dllm/zoo/filters/<model>/``; ``dllm.samplers.get("learn2pd", model="tiny-llada")``
loads one, and without ``model`` / ``filter_path`` the filter of the generating model is used.
The filter itself (model, files, features) is ``dllm.confidence_filter``, shared with the trainer.

Source: Bao et al., "Learning to Parallel Decode: Accelerating Diffusion LLMs with Learned
Parallel Decoding" (arXiv:2509.25188), ims-kdks/Learning-to-Parallel-Decoding
(``llada/generate.py``, ``generate_training_data.py``, ``train.ipynb``). Defaults: threshold
0.96 for LLaDA, 0.9 for Dream (``eval_llada.sh`` / ``dream/eval.sh``), block 32, EoTP on.

Differences from the reference code: the filter's exact architecture was not published (only its
shape 32 -> 32 and the checkpoint name ``layer_2``); ours is Linear(32, 64)-ReLU-Linear(64, 32).
The reference commits the schedule's top-k (k = 1 at its setting steps = gen_length); we always
commit the single most confident candidate. Positions past a short last block read confidence 1.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

import dllm.shipped as shipped_data
from dllm.confidence_filter import DEFAULT_THRESHOLD, ConfidenceFilter, block_confidences, weights_fingerprint
from dllm.config import check_range
from dllm.selection import best_candidate
from dllm.state import Decision, StepView

from . import register
from .base import Sampler
from .eotp import end_of_text_edits

_LOADED: dict[str, ConfidenceFilter] = {}


def find_filter(model: str | None = None, path: str | Path | None = None) -> ConfidenceFilter:
    """The filter at ``path``, or the shipped one of ``model``; a clear error when there is none."""
    for field_name, value in (("model", model), ("filter_path", path)):
        if value is not None and "\x00" in str(value):
            raise ValueError(f"learn2pd.{field_name}={str(value)!r} contains a NUL character")
    key = Path(str(model)).name
    folder = Path(path) if path is not None else shipped_data.shipped_path(shipped_data.FILTERS, key)
    cache_key = str(folder.resolve())
    if cache_key not in _LOADED:
        if not (folder / "filter.json").exists():
            shipped = sorted(shipped_data.shipped_filters())
            who = f"model {model!r}" if path is None else f"path {str(path)!r}"
            raise FileNotFoundError(
                f"no Learn2PD filter for {who} (looked in {folder}); "
                f"shipped filters: {', '.join(shipped) or 'none'}."
                f" Train one with `python -m dllm.zoo.learn2pd_train {model or 'MODEL'}` (writes"
                f" dllm/zoo/filters/{key if model else 'MODEL'}/) or pass filter_path=FOLDER"
            )
        _LOADED[cache_key] = ConfidenceFilter.load(folder)
    return _LOADED[cache_key]


@dataclass
class Learn2PDState:
    filter: ConfidenceFilter  # on the canvas's device
    threshold: float  # the configured one, else the model family's default


@register("learn2pd")
@dataclass
class Learn2PDSampler(Sampler):
    """Learn2PD: a learned filter over the block's confidences picks the tokens to commit; EoTP on top."""

    threshold: float | None = None
    model: str | None = None
    filter_path: str | None = None
    end_of_text: bool = True
    eot_min_confidence: float = 0.0

    def __post_init__(self):
        if self.threshold is not None:
            check_range("learn2pd", "threshold", self.threshold, 0.0, 1.0)
        check_range("learn2pd", "eot_min_confidence", self.eot_min_confidence, 0.0, 1.0)
        self._filter = None
        if self.model is not None or self.filter_path is not None:
            self._filter = find_filter(self.model, self.filter_path)

    def filter_for(self, model) -> ConfidenceFilter:
        """The configured filter, else the shipped one of ``model`` (by name, then folder name)."""
        if self._filter is not None:
            return self._filter
        names = [
            n
            for n in (getattr(model, "name", None), getattr(getattr(model, "path", None), "name", None))
            if n
        ]
        shipped = shipped_data.shipped_filters()
        found = [n for n in names if Path(str(n)).name in shipped]
        return find_filter(found[0] if found else (names[0] if names else None))

    def unsupported_reason(self, model) -> str | None:
        """For the evaluation harness: a model without a filter is skipped with this reason."""
        try:
            self.filter_for(model)
        except FileNotFoundError as exc:
            return str(exc)
        return None

    def init_state(self, state):
        module = self.filter_for(state.model)
        trained_for, these = (
            getattr(module, "meta", {}).get("model_fingerprint"),
            weights_fingerprint(getattr(state.model, "path", None)),
        )
        if trained_for and these and trained_for != these:
            warnings.warn(
                f"learn2pd: the filter in {module.folder} was trained for other weights ({trained_for}) than"
                f" {state.model.name}'s ({these}); retrain it with `python -m dllm.zoo.learn2pd_train"
                f" {state.model.name}`",
                stacklevel=2,
            )
        if state.config.block_length != module.block_length:
            raise ValueError(
                f"learn2pd: the filter was trained for block_length={module.block_length},"
                f" the generation uses block_length={state.config.block_length}"
            )
        threshold = self.threshold if self.threshold is not None else DEFAULT_THRESHOLD[state.shifted]
        return Learn2PDState(filter=module.to(state.tokens.device), threshold=threshold)

    def logit_region(self, state):
        return state.whole_generation() if self.end_of_text else (state.block_start, state.block_end)

    def select(self, view: StepView) -> Decision:
        own = view.state.sampler_state
        features, index, inside = block_confidences(view, own.filter.block_length)
        with torch.no_grad():
            keep = (torch.sigmoid(own.filter(features)) > own.threshold) & inside
        accept = (torch.zeros_like(view.cols).scatter_add_(1, index, keep.long()) > 0) & view.cand
        commit = accept | best_candidate(view.score, view.cand)
        edits = end_of_text_edits(view, commit, self.eot_min_confidence) if self.end_of_text else []
        return Decision(commit=commit, edits=edits)
