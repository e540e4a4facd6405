"""The drafter interface: what a drafter is given each round and what it must return.

Each round the loop hands a drafter one ``DraftRequest`` per active row (the committed verifier
token ids, the draft length ``k`` the length controller chose, the row's own random generator)
and gets one ``Proposal`` back: at most ``k`` tokens in the verifier's vocabulary, cut after the
first stop token, plus the *kind* that selects the verification rule (``dllm.drafters.verify``):

- ``independent``: each token sampled from its own marginal ``q[i]`` (one dLLM pass);
- ``sequential``: token i sampled from ``q[i]`` given the drafted tokens before it (an AR drafter);
- ``deterministic``: anything else (argmax, path search, multi-step denoising); ``q`` is None and
  the point-mass rule applies.

A drafter is a dataclass of parameters (registered like samplers) and holds no run state, so
one instance serves any number of concurrent calls: ``start(verifier, sampling)`` is called once
per run (a ``speculate`` call, a ``Batcher``: load or look up the models, check the vocabulary)
and returns that run's ``DraftRun``; ``propose(run, requests)`` is called once per round for the
active rows together (``DraftRequest.row`` names a row for the whole run: rows join and leave).
A drafter with ``stops_on_confidence`` ends a row's draft after its first token drafted with a
probability below ``DraftRequest.stop_below`` and reports each token's probability in
``Proposal.confidence`` (what the ``confidence`` length controller reads).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from .verify import KINDS


@dataclass
class DraftRequest:
    row: int  # the row's request number (stable while it decodes; new rows join, finished ones leave)
    context: list[int]  # committed verifier ids: prompt + accepted output
    k: int  # draft length asked for (>= 1)
    generator: torch.Generator  # this row's drafter RNG (never the verifier's)
    stop_below: float = 0.0  # end the draft after its first token drafted with a lower probability


@dataclass
class Proposal:
    tokens: list[int]  # m <= k draft tokens (verifier ids), cut after the first stop token
    kind: str  # "independent" | "sequential" | "deterministic"
    q: torch.Tensor | None = None  # [m, V] fp32: the distributions the tokens were drawn from
    raw_len: int = 0  # tokens drafted before the stop-token cut
    gen_len: int | None = None  # EOS-aware length of the raw draft (DiffuSpec's L_gen), if known
    forwards: int = 0  # drafter model forwards this row took part in
    confidence: list[float] | None = None  # the drafter's probability of each token, if it reports them

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"proposal kind {self.kind!r} is not one of {KINDS}")
        if (self.q is None) != (self.kind == "deterministic") and self.tokens:
            raise ValueError(f"a {self.kind} proposal {'needs' if self.q is None else 'has no'} q")


@dataclass
class Sampling:
    """The verifier's sampling settings, as drafters see them."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def processors(self):
        """``transformers`` logits processors of these settings (empty when greedy)."""
        from dllm.models.lazy import from_transformers

        LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper = from_transformers(
            "LogitsProcessorList", "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"
        )

        out = LogitsProcessorList()
        if self.greedy:
            return out
        if self.temperature != 1.0:
            out.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k is not None:
            out.append(TopKLogitsWarper(self.top_k))
        if self.top_p is not None and self.top_p < 1.0:
            out.append(TopPLogitsWarper(self.top_p))
        return out

    def distribution(self, logits: torch.Tensor) -> torch.Tensor:
        """Processed fp32 probabilities for logit rows ``[N, V]`` (temperature, top-k and top-p
        do not read the context)."""
        ids = torch.zeros(logits.shape[0], 1, dtype=torch.long, device=logits.device)
        return torch.softmax(self.processors()(ids, logits.float()), dim=-1)

    def probabilities(self, logits: torch.Tensor, context: list[int]) -> torch.Tensor:
        """Processed fp32 probabilities for logit rows ``[N, V]`` scored after ``context``."""
        ids = torch.tensor([context], device=logits.device).expand(logits.shape[0], -1)
        return torch.softmax(self.processors()(ids, logits.float()), dim=-1)


def stop_cut(tokens: list[int], stop_ids) -> list[int]:
    """``tokens`` up to and including the first stop token."""
    for i, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[: i + 1]
    return tokens


def eos_aware_length(raw: list[int], stop_ids) -> int:
    """Tokens of a raw draft before its first stop token (DiffuSpec's L_gen)."""
    return next((i for i, token in enumerate(raw) if token in stop_ids), len(raw))


@dataclass
class VocabMap:
    """Which drafter ids the verifier can take: the tokenizers must agree token for token on the
    verifier's ids; the drafter's mask token and ids the verifier lacks are never proposed."""

    size: int  # the verifier's logit width
    banned: torch.Tensor  # [size] bool

    @classmethod
    def build(
        cls,
        drafter_tok,
        verifier_tok,
        verifier_size: int,
        drafter_name: str,
        verifier_name: str,
        mask_id: int | None = None,
    ) -> "VocabMap":
        if drafter_tok is None or verifier_tok is None:
            raise ValueError(f"drafter {drafter_name!r} and verifier {verifier_name!r} both need a tokenizer")
        drafter_vocab, verifier_vocab = drafter_tok.get_vocab(), verifier_tok.get_vocab()
        differ = sorted(t for t, i in verifier_vocab.items() if drafter_vocab.get(t) != i)
        if differ:
            raise ValueError(
                f"the tokenizers of drafter {drafter_name!r} ({len(drafter_vocab)} tokens) and verifier "
                f"{verifier_name!r} ({len(verifier_vocab)} tokens) differ ({len(differ)} verifier tokens map "
                f"to other ids, e.g. {differ[:3]}); speculative decoding needs one shared vocabulary"
            )
        known = torch.zeros(verifier_size, dtype=torch.bool)
        known[[i for i in verifier_vocab.values() if i < verifier_size]] = True
        banned = ~known
        if mask_id is not None and mask_id < verifier_size:
            banned[mask_id] = True
        return cls(size=verifier_size, banned=banned)

    def usable_prefix(self, tokens: list[int]) -> list[int]:
        """``tokens`` up to (without) the first one the verifier cannot take."""
        cut = next((i for i, t in enumerate(tokens) if t >= self.size or bool(self.banned[t])), len(tokens))
        return tokens[:cut]

    def logits(self, drafter_logits: torch.Tensor) -> torch.Tensor:
        """Drafter logits ``[..., V_d]`` as fp32 verifier-vocabulary logits ``[..., size]``."""
        width = drafter_logits.shape[-1]
        out = drafter_logits.float()[..., : self.size]
        if width < self.size:
            out = torch.cat([out, out.new_full((*out.shape[:-1], self.size - width), float("-inf"))], dim=-1)
        return out.masked_fill(self.banned.to(out.device), float("-inf"))


@dataclass
class DraftRun:
    """One run's drafting state: the verifier's sampling settings and stop tokens (drafters extend
    it with their models and caches)."""

    sampling: Sampling
    stop_ids: set


@dataclass
class Drafter:
    """Base class of drafter plugins (see the module docstring)."""

    stops_on_confidence = False  # honours DraftRequest.stop_below (a confidence-stopping controller)

    def start(self, verifier, sampling: Sampling) -> DraftRun:
        return DraftRun(sampling=sampling, stop_ids=set(verifier.eos_ids))

    def room(self, run: DraftRun, context_length: int) -> int:
        """The longest draft this drafter can make after ``context_length`` tokens."""
        return 1 << 30

    def propose(self, run: DraftRun, requests: list[DraftRequest]) -> list[Proposal]:
        raise NotImplementedError

    def default_length(self):
        """The draft-length controller used when the caller names none."""
        from .length import FixedLength

        return FixedLength()


@dataclass
class DiffusionRun(DraftRun):
    dlm: object = None  # the drafting dLLM
    vocab: VocabMap | None = None


@dataclass
class DiffusionDrafter(Drafter):
    """A drafter built on a dLLM (``model``: a shipped name, folder, hub id or a loaded model)."""

    model: object = "tiny-dream"

    def start(self, verifier, sampling: Sampling) -> DiffusionRun:
        from dllm.models import DiffusionModel

        dlm = self.model if isinstance(self.model, DiffusionModel) else None
        if dlm is None:
            if not isinstance(self.model, str):
                raise ValueError(
                    f"drafter {self.name!r}: model must be a model name, folder or loaded dLLM, "
                    f"got {type(self.model).__name__}"
                )
            dlm = _load_cached(self.model, verifier.device)
        if not isinstance(dlm, DiffusionModel):
            raise ValueError(
                f"drafter {self.name!r} needs a diffusion LM as its model; {self.model!r} is "
                f"{type(dlm).__name__} (an autoregressive model: use the 'ar' drafter)"
            )
        vocab = VocabMap.build(
            dlm.tokenizer,
            verifier.tokenizer,
            verifier.vocab_size,
            dlm.name,
            verifier.name,
            mask_id=dlm.mask_id,
        )
        return DiffusionRun(sampling=sampling, stop_ids=set(verifier.eos_ids), dlm=dlm, vocab=vocab)

    def room(self, run: DiffusionRun, context_length: int) -> int:
        return run.dlm.max_length - context_length

    @staticmethod
    def block_logits(run: DiffusionRun, contexts: list[list[int]], ks: list[int]) -> torch.Tensor:
        """One dLLM forward over each ``context + [MASK] * k`` (a batch, left-padded); fp32 logits
        ``[B, max k, V_verifier]`` for the masked positions (rows past ``k[b]`` are padding)."""
        dlm = run.dlm
        width_p, width_k = max(len(c) for c in contexts), max(ks)
        device = dlm.device
        tokens = torch.full((len(contexts), width_p + width_k), dlm.mask_id, dtype=torch.long, device=device)
        pads = torch.tensor([width_p - len(c) for c in contexts], device=device)
        for row, context in enumerate(contexts):
            tokens[row, : pads[row]] = dlm.pad_id
            tokens[row, pads[row] : width_p] = torch.tensor(context, device=device)
        columns = torch.arange(tokens.shape[1], device=device)[None]
        valid = (columns >= pads[:, None]) & (columns < width_p + torch.tensor(ks, device=device)[:, None])
        positions = (valid.long().cumsum(1) - 1).clamp(min=0)
        targets = (width_p + torch.arange(width_k, device=device)).expand(len(contexts), -1)
        with torch.no_grad():
            logits = dlm.net(tokens, positions, valid, logits_for=targets)
        return run.vocab.logits(logits)


_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def _load_cached(name: str, device):
    """Models are loaded once per process and shared by every drafter that names them (under a
    lock: two threads starting runs at once load it once)."""
    from dllm.models import load

    key = (name, str(device))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load(name, device=device)
        return _MODELS[key]
