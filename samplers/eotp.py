"""End-of-Text Prediction (EoTP): stop decoding EOS padding once the end of the text is known.

Idea: an instruction-tuned dLLM fills the tail of its canvas with EOS, and decoding that padding
token by token wastes most forwards of a long canvas. After the inner sampler's decision, EoTP
truncates the row (every column after the cut becomes EOS, so later blocks need no forward):

1. if an EOS is decoded (before this step or committed by it), cut right after the first one —
   nothing after the first EOS is part of the answer, so no answer text is discarded (the
   answer's remaining masks are then predicted next to EOS padding instead of masks);
2. otherwise, among masked positions predicted EOS (probability >= ``min_confidence``), cut
   right after the most confident one; that position itself stays masked and is decoded later.

Usable on top of any sampler: ``dllm.samplers.get("eotp", inner="fast-dllm")``; Learn2PD applies
the same rule (``end_of_text_edits``) itself.

Source: Bao et al., "Learning to Parallel Decode ..." (Learn2PD, arXiv:2509.25188), EoTP in
``llada/generate.py`` (``generate_predict_eot`` and the ``L2P+EoT`` method).

Differences from the reference code: rule 2 only considers masked positions after the row's last
decoded non-EOS token — the reference takes the most confident EOS prediction anywhere, and a
confident spurious EOS before decoded text would erase that text; per-row instead of batch row 0;
``min_confidence`` (0 = the reference: any argmax EOS) is an optional guard.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.config import check_range
from dllm.state import Decision, Edit, StepView

from . import register
from .base import Wrapper


def end_of_text_edits(
    view: StepView, commit: torch.Tensor, min_confidence: float = 0.0, written: torch.Tensor | None = None
) -> list[Edit]:
    """Truncation edits for the rows of ``view`` after committing ``commit`` (``written``: the
    tokens it writes, default the predictions); see the module docstring for the rule."""
    st = view.state
    tokens = view.canvas_tokens()
    in_gen = view.col_valid & (view.cols >= st.gen_start)
    masked = (tokens == st.mask_id) & in_gen
    pred_eos = view.is_eos(view.pred if written is None else written)
    decided_eos = in_gen & ((view.is_eos(tokens) & ~masked) | (commit & pred_eos))
    decided_text = in_gen & ((~masked & ~view.is_eos(tokens)) | (commit & ~pred_eos))
    cols = view.cols
    first_eos = torch.where(decided_eos, cols, st.width).min(1).values
    last_text = torch.where(decided_text, cols, -1).max(1).values
    likely = masked & ~commit & pred_eos & (view.conf >= min_confidence) & (cols > last_text[:, None])
    best = torch.where(likely, view.conf, -1.0).argmax(1)
    cut = torch.where(
        first_eos < st.width, first_eos, torch.where(likely.any(1), cols.gather(1, best[:, None])[:, 0], -1)
    )
    # only cut where something masked would still be decoded after the cut
    open_after = (masked & ~commit & (cols > cut[:, None])).any(1) & (cut >= 0) & st.active
    return [Edit(op="truncate", row=row, col=int(cut[row])) for row in open_after.nonzero()[:, 0].tolist()]


@register("eotp")
@dataclass
class EndOfTextSampler(Wrapper):
    """End-of-Text Prediction on top of any sampler: truncate after a decoded or confidently predicted EOS."""

    inner: object = "llada"
    inner_params: dict = None
    min_confidence: float = 0.0

    def __post_init__(self):
        check_range("eotp", "min_confidence", self.min_confidence, 0.0, 1.0)
        super().__post_init__()

    def select(self, view: StepView) -> Decision:
        decision = self.inner.select(view)
        edits = end_of_text_edits(view, decision.commit, self.min_confidence, decision.tokens)
        if not edits:
            return decision
        return Decision(
            commit=decision.commit,
            tokens=decision.tokens,
            stop=decision.stop,
            edits=list(decision.edits) + edits,
        )
