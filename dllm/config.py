"""Generation settings, validated at construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass


def check_range(owner: str, name: str, value, low=None, high=None, *, low_open=False, high_open=False):
    """Raise ``ValueError`` naming ``owner.name``, the value and the allowed range when out of range."""
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{owner}.{name}={value!r} is out of range; allowed {interval}")


@dataclass
class GenerationConfig:
    """How much to generate and how to draw tokens; samplers decide how many to commit per step.

    gen_length: masked positions appended after the prompt (the canvas).
    block_length: semi-autoregressive block size; ``gen_length`` must be a multiple of it.
    steps: denoising steps for schedule-based samplers (LLaDA); None = ``gen_length``
        (one token per step). Must be a multiple of the number of blocks.
    temperature: 0 = greedy; >0 = Gumbel-max sampling from softmax(logits / T) in float64.
    seed: seeds the sampling noise; the same seed gives the same output, whatever the batch.
    cfg_scale: unsupervised classifier-free guidance weight (0 = off).
    logits_eos_inf: EOS can never be proposed.
    confidence_eos_eot_inf: EOS/EoT are proposed normally but committed last (after every other
        masked position of the block).
    stop_at_eos: once every position before a committed EOS is decoded, fill the rest of the
        row with EOS and stop it.
    max_length: limit on prompt + generation (None = the model's context length).
    trace: record which positions were committed at which step, with what confidence.
    """

    gen_length: int = 128
    block_length: int = 32
    steps: int | None = None
    temperature: float = 0.0
    seed: int = 0
    cfg_scale: float = 0.0
    logits_eos_inf: bool = False
    confidence_eos_eot_inf: bool = False
    stop_at_eos: bool = False
    max_length: int | None = None
    trace: bool = False

    def __post_init__(self):
        owner = "GenerationConfig"
        check_range(owner, "gen_length", self.gen_length, 1)
        check_range(owner, "block_length", self.block_length, 1, self.gen_length)
        if self.gen_length % self.block_length:
            raise ValueError(
                f"GenerationConfig.gen_length={self.gen_length} is not a multiple of block_length={self.block_length}"
            )
        if self.steps is None:
            self.steps = self.gen_length
        check_range(owner, "steps", self.steps, 1)
        if self.steps % self.num_blocks:
            raise ValueError(
                f"GenerationConfig.steps={self.steps} is not a multiple of the number of blocks"
                f" ({self.gen_length} / {self.block_length} = {self.num_blocks})"
            )
        check_range(owner, "temperature", self.temperature, 0.0)
        check_range(owner, "cfg_scale", self.cfg_scale, 0.0)
        if self.max_length is not None:
            check_range(owner, "max_length", self.max_length, 1)

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks

    def to_dict(self) -> dict:
        return asdict(self)
