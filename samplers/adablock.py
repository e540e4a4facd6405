"""AdaBlock-dLLM: semantic-aware block sizes from the confidence of a predicted delimiter.

Idea: fixed semi-autoregressive blocks cut sentences in arbitrary places — a block may have to
commit tokens that depend on text of the next block, or stop before text it already knows.
After the first forward of each block (which is also its first denoising step), AdaBlock looks at
the predictions in a look-ahead window of ``window`` x the generation length; if some position
predicts a delimiter (newline by default), the block ends *on* the most confident such position
when its confidence is at least ``delimiter_threshold``, else it keeps the default size
(``block_length``). Inside the block the Fast-dLLM threshold rule commits tokens. With
``delimiter_threshold > 1`` the blocks are the fixed ones.

Source: Lu et al., "AdaBlock-dLLM: Semantic-Aware Diffusion LLM Inference via Adaptive Block
Size" (arXiv:2509.26432), lgxi24/AdaBlock-dLLM ``llada/generate_adablock.py`` and
``dream/model/generation_utils_adablock.py``: token threshold 0.9, delimiter threshold 0.3
(LLaDA) / 0.5 (Dream), default block 32, window 25 % of the generation length, newline delimiter.

Differences from the reference code: delimiters are strings resolved through the model's
tokenizer (the reference hard-codes token ids: 198 for LLaDA, 24 Qwen ids for Dream); per-row
blocks (the reference asserts batch size 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dllm.config import check_range
from dllm.selection import threshold_mask
from dllm.state import SHARED, Decision, StepView

from . import register
from .base import Sampler

DEFAULT_DELIMITER_THRESHOLD = {False: 0.3, True: 0.5}  # LLaDA / Dream (shifted logits)


@dataclass
class AdaBlockState:
    delimiters: torch.Tensor = field(metadata=SHARED)  # token ids of the delimiter strings
    delimiter_threshold: float  # the configured one, else the model family's default


@register("adablock")
@dataclass
class AdaBlockSampler(Sampler):
    """AdaBlock: end each block at a confidently predicted delimiter in a look-ahead window (or default)."""

    threshold: float = 0.9
    delimiter_threshold: float | None = None
    delimiters: tuple = ("\n",)
    window: float = 0.25

    def __post_init__(self):
        check_range("adablock", "threshold", self.threshold, 0.0, 1.0, low_open=True)
        if self.delimiter_threshold is not None:
            check_range("adablock", "delimiter_threshold", self.delimiter_threshold, 0.0)
        check_range("adablock", "window", self.window, 0.0, 1.0, low_open=True)
        delimiters = (self.delimiters,) if isinstance(self.delimiters, str) else tuple(self.delimiters)
        if not delimiters or not all(isinstance(d, str) and d for d in delimiters):
            raise ValueError(
                f"adablock.delimiters={self.delimiters!r} is invalid; allowed: one or more non-empty"
                " strings, each a single token of the model's tokenizer"
            )
        self.delimiters = delimiters

    def unsupported_reason(self, model) -> str | None:
        if getattr(model, "tokenizer", None) is None:
            return f"adablock needs the model's tokenizer to resolve delimiters {self.delimiters!r}"
        return None

    def init_state(self, state):
        reason = self.unsupported_reason(state.model)
        if reason:
            raise ValueError(reason)
        ids = torch.tensor(state.model.resolve_tokens(self.delimiters), device=state.tokens.device)
        bar = self.delimiter_threshold
        bar = DEFAULT_DELIMITER_THRESHOLD[state.shifted] if bar is None else bar
        return AdaBlockState(delimiters=ids, delimiter_threshold=bar)

    def lookahead(self, state) -> torch.Tensor:
        """[B] end of each row's look-ahead window (exclusive)."""
        size = ((state.gen_end - state.gen_start) * self.window).floor().long()
        return torch.minimum(state.block_start + size, state.gen_end)

    def logit_region(self, state):
        first = state.step_in_block == 0
        end = torch.where(first, torch.maximum(state.block_end, self.lookahead(state)), state.block_end)
        return state.block_start, end

    def plan_block(self, view: StepView) -> torch.Tensor:
        st, own = view.state, view.state.sampler_state
        in_window = (view.cols >= st.block_start[:, None]) & (view.cols < self.lookahead(st)[:, None])
        is_delim = torch.isin(view.pred, own.delimiters) & in_window & view.col_valid
        conf = torch.where(is_delim, view.conf, -1.0)
        best, at = conf.max(1)
        end = view.cols.gather(1, at[:, None])[:, 0] + 1
        found = is_delim.any(1) & (best >= own.delimiter_threshold)
        return torch.where(found, end, st.block_end)

    def select(self, view: StepView) -> Decision:
        return Decision(commit=threshold_mask(view.score, view.cand, self.threshold))
