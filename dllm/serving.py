"""Continuous batching for prompts that arrive while others decode: a server's requests.

A ``Batcher`` is a worker thread running the one engine (``dllm.engine``) over a thread-safe
queue: a submitted prompt joins the running batch after the next step when a row is free (and,
for a diffusion model, when its prompt fits the batch's prompt region), or starts the next batch.
Every result equals the prompt's run alone, since rows never see each other. A request streams its
row after every step (``on_step(event, row)``) and can be cancelled; its row then leaves the batch.

A diffusion model is served with a sampler and a cache (``GenerationConfig`` settings: the
denoising step); an autoregressive model (a verifier) with speculative decoding, a ``drafter`` or
none (``SpeculativeConfig`` settings: the speculative round):

    batcher = Batcher(model, sampler="fast-dllm", cache="dual", max_batch=8, gen_length=64)
    batcher = Batcher(verifier, drafter="deer", max_batch=8, max_new_tokens=64)
    request = batcher.submit("Q: 2+3=?", on_step=lambda event, row: ...)
    print(request.result().text)
    batcher.close()

Settings are resolved as ``dllm.generate`` / ``dllm.speculate`` resolve them (one function each).
Samplers that change the canvas width (DAEDAL) and classifier-free guidance cannot take rows
mid-run: their requests are decoded in consecutive batches of the waiting ones.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable

import dllm.caches as cache_registry
import dllm.canvas as canvas
import dllm.samplers as sampler_registry
from dllm.config import GenerationConfig, resolve_generation
from dllm.engine import Batcher as _EngineBatcher
from dllm.engine import Engine, Request, StepListener, check_max_batch
from dllm.prompts import encode_prompt

__all__ = ["Batcher", "BatcherPool", "Request", "StepListener"]


class Batcher(_EngineBatcher):
    """A worker thread decoding submitted prompts with continuous batching (module docstring)."""

    def __init__(
        self,
        model,
        sampler=None,
        cache=None,
        config=None,
        *,
        max_batch: int = 8,
        attention_backend: str | None = None,
        drafter=None,
        length=None,
        **settings,
    ):
        from dllm.drafters.loop import Speculative, resolve_speculative
        from dllm.generate import Denoising, Loop
        from dllm.models import CausalLM, DiffusionModel

        check_max_batch(max_batch, none_ok=False)
        self.model = model
        if isinstance(model, CausalLM):
            given = [name for name, value in (("sampler", sampler), ("cache", cache)) if value is not None]
            if given or attention_backend is not None or isinstance(config, GenerationConfig):
                raise ValueError(
                    f"{model.name!r} is an autoregressive model: it is served with speculative decoding"
                    " (drafter=..., SpeculativeConfig settings), not with a"
                    f" {' or '.join(given) or 'denoising'} setting of diffusion models"
                )
            self.config = resolve_speculative(config, **settings)
            self.kind = Speculative(model, drafter, length, self.config)
        elif isinstance(model, DiffusionModel):
            if drafter is not None or length is not None:
                raise ValueError(
                    f"{model.name!r} is a diffusion model: it decodes with a sampler and a cache; a drafter"
                    " needs an autoregressive verifier (Batcher(verifier, drafter=...))"
                )
            self.config = resolve_generation(config, model, **settings)
            self.sampler = sampler_registry.get("llada" if sampler is None else sampler)
            self.cache = cache_registry.get("none" if cache is None else cache)
            canvas.check_blocks(model, self.config)
            loop = Loop(model, self.sampler, self.cache, self.config, attention_backend)
            self.kind = Denoising(loop)
        else:
            raise TypeError(
                f"Batcher needs a model loaded by dllm.load (a diffusion LM or a causal LM); got"
                f" {type(model).__name__}"
            )
        self.max_batch = max_batch
        super().__init__(Engine(self.kind, max_batch), self._request)

    def _request(
        self, prompt, *, on_step=None, chat: bool = False, allow_special: bool = False, **row
    ) -> Request:
        """The checked request for one prompt (text or token ids), as ``generate`` / ``speculate``
        check theirs. ``row``: the step kind's per-request settings (a speculative row's ``seed``
        and ``max_new_tokens``)."""
        ids = encode_prompt(self.model, prompt, chat, allow_special, vocabulary=self.kind.vocabulary)
        return self.kind.request(ids, on_step, **row)


class BatcherPool:
    """Batchers by their settings (a key), made on first use: requests with the same settings share
    a running batch; the least recently used beyond ``size`` is closed once its requests are done."""

    def __init__(self, size: int):
        check_max_batch(size, none_ok=False)
        self.size = size
        self._batchers: collections.OrderedDict[str, Batcher] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, make: Callable[[], Batcher]) -> Batcher:
        with self._lock:
            if key in self._batchers:
                self._batchers.move_to_end(key)
                return self._batchers[key]
            self._batchers[key] = make()
            while len(self._batchers) > self.size:
                _, old = self._batchers.popitem(last=False)
                threading.Thread(target=old.close, name="dllm-batcher-close", daemon=True).start()
            return self._batchers[key]

    def batchers(self) -> list[Batcher]:
        with self._lock:
            return list(self._batchers.values())

    def close(self, timeout: float | None = None) -> None:
        """Close every Batcher: queued and running requests finish first (within ``timeout`` each)."""
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), collections.OrderedDict()
        for batcher in batchers:
            batcher.close(timeout)
