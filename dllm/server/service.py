"""What the server serves: one model, its Batchers, and the resolution of each request's settings.

A request's settings are resolved by the Python API's own functions (``resolve_generation`` and
the sampler / cache registries for a diffusion model, ``resolve_speculative`` for a verifier) on
top of the server's (``ServeOptions``, the ``dllm serve`` flags), so a request gets the result
``dllm.generate`` / ``dllm.speculate`` give with the same settings. Requests whose settings are the
same share one running batch (a ``dllm.serving.Batcher``: continuous batching); other settings get
a Batcher of their own (``BatcherPool``, the least recently used closed beyond ``max_engines``).
A speculative row's ``seed`` and ``max_tokens`` are its own, so they never split a batch; a
diffusion row's canvas width (``max_tokens``) and noise seed are the batch's.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from dataclasses import dataclass, field

from .protocol import APIError, _Body

GENERATION_FIELDS = (  # GenerationConfig fields a request may set (besides max_tokens, temperature, seed)
    "block_length",
    "steps",
    "sub_block_length",
    "cfg_scale",
    "logits_eos_inf",
    "confidence_eos_eot_inf",
    "stop_at_eos",
)
DIFFUSION_ONLY = ("sampler", "sampler_args", "cache", "cache_args", *GENERATION_FIELDS, "dllm_canvas")


@dataclass
class ServeOptions:
    """The server's settings (``dllm serve``'s flags); plain values, so a Ray replica can take them.

    ``generation``: ``GenerationConfig`` settings (a diffusion model's defaults); ``speculative``:
    ``SpeculativeConfig`` settings (a verifier's). ``max_batch``: rows of one running batch;
    ``max_queue``: requests allowed to wait for a row (beyond: 429); ``max_engines``: running batches
    of distinct settings kept. ``chat_template``: a Jinja chat template (text, or a file's path) for
    a tokenizer that has none."""

    model: str
    name: str | None = None  # the model's name in the API (default: ``model``)
    device: str = "cpu"
    dtype: str | None = None
    sampler: str | None = None
    sampler_args: dict = field(default_factory=dict)
    cache: str | None = None
    cache_args: dict = field(default_factory=dict)
    generation: dict = field(default_factory=dict)
    drafter: str | None = None
    drafter_args: dict = field(default_factory=dict)
    length: str | None = None
    length_args: dict = field(default_factory=dict)
    speculative: dict = field(default_factory=dict)
    temperature: float | None = None  # either kind's
    seed: int | None = None
    max_batch: int = 8
    max_queue: int = 64
    max_engines: int = 4
    chat_template: str | None = None
    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    threads: int | None = None

    @property
    def served_name(self) -> str:
        return self.name or self.model

    def sampling(self) -> dict:
        """``temperature`` / ``seed`` where given (settings of both kinds)."""
        return {k: v for k, v in (("temperature", self.temperature), ("seed", self.seed)) if v is not None}

    def check(self) -> None:
        """Everything that can be checked before the model loads (a ``ValueError`` / ``TypeError``
        naming the flag)."""
        import dllm.caches as cache_registry
        import dllm.samplers as sampler_registry
        from dllm.config import GenerationConfig
        from dllm.drafters.loop import resolve_speculative
        from dllm.engine import check_max_batch

        for name, value in (
            ("max_batch", self.max_batch),
            ("max_queue", self.max_queue),
            ("max_engines", self.max_engines),
            ("max_body_bytes", self.max_body_bytes),
        ):
            try:
                check_max_batch(value, none_ok=False)
            except ValueError:
                raise ValueError(f"--{name.replace('_', '-')}={value!r} must be a positive integer") from None
        diffusion = [
            flag
            for flag, value in (
                ("--sampler", self.sampler),
                ("--cache", self.cache),
                ("generation", self.generation),
            )
            if value
        ]
        if self.drafter is not None and diffusion:
            raise ValueError(
                f"--drafter serves an autoregressive verifier; {', '.join(diffusion)} are settings of a"
                " diffusion model: give one or the other"
            )
        sampler_registry.get(self.sampler or "llada", **self.sampler_args)
        cache_registry.get(self.cache or "none", **self.cache_args)
        GenerationConfig(**{**self.generation, **self.sampling()})
        resolve_speculative(None, **self.speculative, **self.sampling())
        if self.drafter is None and (self.drafter_args or self.length or self.length_args):
            raise ValueError("--drafter-model, --drafter-arg, --length and --length-arg need a --drafter")


def settings_key(*parts) -> str:
    def plain(obj):
        if dataclasses.is_dataclass(obj):
            return {"type": type(obj).__name__, **dataclasses.asdict(obj)}
        return obj

    return json.dumps([plain(p) for p in parts], sort_keys=True, default=repr)


@dataclass
class Job:
    """One choice of a request: its prompt ids, the key and maker of the Batcher that decodes it, its
    row settings, its token budget and its index among the request's choices."""

    ids: list[int]
    key: str
    make: object  # () -> Batcher
    row: dict  # per-row settings (speculative: seed, max_new_tokens)
    max_tokens: int
    index: int = 0


class Service:
    """One served model: loading, per-request settings, admission (``max_queue``), the Batchers."""

    def __init__(self, options: ServeOptions):
        from dllm.serving import BatcherPool

        options.check()
        self.options = options
        self.state, self.error = "loading", None
        self.model = None
        self.speculative = False
        self.pool = BatcherPool(options.max_engines)
        self.accepting = True
        self._live: set = set()
        self._lock = threading.Lock()
        self.on_finished = []  # callbacks(request) once a request has a result / error / cancel

    # ---- loading --------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model (and a drafter); ``state`` becomes ready, or failed with ``error``."""
        try:
            self._load()
        except Exception as exc:  # noqa: BLE001 — reported by /health and the CLI
            self.state, self.error = "failed", exc
            raise
        self.state = "ready"

    def _load(self) -> None:
        import dllm
        import dllm.canvas as canvas
        from dllm.config import resolve_generation
        from dllm.drafters.loop import resolve_speculative
        from dllm.models import CausalLM

        o = self.options
        if o.threads:
            import torch

            torch.set_num_threads(o.threads)
        model = dllm.load(o.model, dtype=o.dtype, device=o.device)
        self.speculative = isinstance(model, CausalLM)
        if o.chat_template is not None:
            self._set_chat_template(model, o.chat_template)
        if self.speculative:
            if o.sampler or o.cache or o.generation:
                raise ValueError(
                    f"{o.model!r} is an autoregressive model: it is served with speculative decoding"
                    " (--drafter ...), not with --sampler / --cache / diffusion settings"
                )
            self.spec_config = resolve_speculative(None, **o.speculative, **o.sampling())
            self.drafter, self.controller = dllm.drafters.build(
                o.drafter, o.drafter_args, o.length, o.length_args
            )
        else:
            if o.drafter is not None or o.speculative:
                raise ValueError(
                    f"{o.model!r} is a diffusion model: it decodes with --sampler / --cache; --drafter and"
                    " speculative settings need an autoregressive verifier"
                )
            self.gen_config = resolve_generation(None, model, **o.generation, **o.sampling())
            canvas.check_blocks(model, self.gen_config)
        self.model = model
        from .protocol import CompletionBody

        # the running batch of the server's own settings, made now: a drafter's model loads here,
        # not inside the first request
        [job] = self.jobs(CompletionBody(prompt=[0]), [[0]])
        self.pool.get(job.key, job.make)

    @staticmethod
    def _set_chat_template(model, template: str) -> None:
        from pathlib import Path

        path = Path(template)
        if "{" not in template and path.is_file():
            template = path.read_text()
        if "{" not in template:
            raise ValueError(f"--chat-template {template!r} is neither a Jinja template nor a file")
        model.tokenizer.chat_template = template

    # ---- requests -------------------------------------------------------------------------

    def encode(self, prompt, allow_special: bool, chat: bool) -> list[int]:
        """A prompt (text, token ids, or chat messages) -> checked ids (400 on a bad prompt)."""
        from dllm.prompts import encode_chat, encode_prompt

        vocabulary = "the verifier's vocabulary" if self.speculative else "the vocabulary"
        try:
            if chat:
                return encode_chat(self.model, prompt, allow_special, vocabulary=vocabulary)
            return encode_prompt(self.model, prompt, allow_special=allow_special, vocabulary=vocabulary)
        except (ValueError, TypeError) as exc:
            raise APIError(400, str(exc), param="messages" if chat else "prompt") from None

    def jobs(self, body: _Body, prompts: list[list[int]]) -> list[Job]:
        """The choices of a request (``n`` per prompt), its settings resolved and checked."""
        try:
            make = self._speculative if self.speculative else self._denoising
            return make(body, prompts)
        except APIError:
            raise
        except (ValueError, TypeError) as exc:
            raise APIError(400, _named(str(exc)), param=_param_of(str(exc))) from None

    def _denoising(self, body: _Body, prompts) -> list[Job]:
        import dllm.caches as cache_registry
        import dllm.canvas as canvas
        import dllm.samplers as sampler_registry
        from dllm.config import resolve_generation
        from dllm.serving import Batcher

        o, model = self.options, self.model
        base_sampler, base_cache = o.sampler or "llada", o.cache or "none"
        sampler = _plugin(
            sampler_registry, "sampler", body.sampler, base_sampler, o.sampler_args, body.sampler_args
        )
        cache = _plugin(cache_registry, "cache", body.cache, base_cache, o.cache_args, body.cache_args)
        settings = {f: getattr(body, f) for f in GENERATION_FIELDS if getattr(body, f) is not None}
        if body.top_p is not None and body.top_p != 1:
            raise APIError(
                400, f"top_p={body.top_p}: diffusion samplers do not filter by top-p", param="top_p"
            )
        if body.top_k is not None:
            raise APIError(
                400, "top_k is a setting of speculative decoding, not of diffusion samplers", param="top_k"
            )
        for name, value in (("gen_length", _max_tokens(body)), ("temperature", body.temperature)):
            if value is not None:
                settings[name] = value
        configs = []
        for j in range(body.n):  # choice j draws with seed + j
            seed = (self.gen_config.seed if body.seed is None else body.seed) + j
            try:
                config = resolve_generation(self.gen_config, model, **settings, seed=seed)
            except (ValueError, TypeError) as exc:
                raise APIError(400, _explain_blocks(str(exc), body), param=_param_of(str(exc))) from None
            canvas.check_blocks(model, config)
            configs.append(config)

        def batcher(config):
            return lambda: Batcher(model, sampler, cache, config, max_batch=o.max_batch)

        return [
            Job(
                ids,
                settings_key("denoising", sampler, cache, config),
                batcher(config),
                {},
                config.gen_length,
                p * body.n + j,
            )
            for p, ids in enumerate(prompts)
            for j, config in enumerate(configs)
        ]

    def _speculative(self, body: _Body, prompts) -> list[Job]:
        from dllm.drafters.loop import resolve_speculative
        from dllm.serving import Batcher

        given = [f for f in DIFFUSION_ONLY if getattr(body, f) not in (None, False)]
        if given:
            raise APIError(
                400,
                f"{given[0]} is a setting of diffusion models; {self.options.served_name!r} is an"
                " autoregressive verifier served with speculative decoding",
                param=given[0],
            )
        settings = {
            name: getattr(body, name)
            for name in ("temperature", "top_p", "top_k")
            if getattr(body, name) is not None
        }
        config = resolve_speculative(self.spec_config, **settings)
        budget = config.max_new_tokens if _max_tokens(body) is None else _max_tokens(body)
        base_seed = config.row_seeds(1)[0] if body.seed is None else body.seed
        key = settings_key("speculative", config.temperature, config.top_k, config.top_p)
        o = self.options

        def make():
            return Batcher(
                self.model, drafter=self.drafter, length=self.controller, config=config, max_batch=o.max_batch
            )

        return [
            Job(ids, key, make, {"seed": base_seed + j, "max_new_tokens": budget}, budget, p * body.n + j)
            for p, ids in enumerate(prompts)
            for j in range(body.n)
        ]

    def submit(self, jobs: list[Job], listeners: list) -> list:
        """Queue every job (all or none): 429 when the queue has no room for them all."""
        with self._lock:
            if not self.accepting:
                raise APIError(503, "the server is shutting down; no new requests are taken")
            waiting = self._waiting()
            if waiting + len(jobs) > self.options.max_queue:
                raise APIError(
                    429,
                    f"the queue is full ({waiting} requests wait for a row, at most"
                    f" {self.options.max_queue}); retry later",
                    code="queue_full",
                    headers={"Retry-After": "1"},
                )
            requests = []
            try:
                for job, listener in zip(jobs, listeners):
                    batcher = self.pool.get(job.key, job.make)
                    requests.append(batcher.submit(job.ids, on_step=listener, **job.row))
            except (ValueError, TypeError) as exc:
                for request in requests:
                    request.cancel()
                raise APIError(400, _named(str(exc)), param=_param_of(str(exc))) from None
            except RuntimeError as exc:  # a Batcher closed beside us (shutdown)
                for request in requests:
                    request.cancel()
                raise APIError(503, f"the server is shutting down ({exc})") from None
            self._live.update(requests)
        for request in requests:
            request.when_done(self._finished)
        return requests

    def _finished(self, request) -> None:
        with self._lock:
            self._live.discard(request)
        for callback in self.on_finished:
            callback(request)

    def _waiting(self) -> int:  # under self._lock
        return sum(1 for r in self._live if r.started is None)

    def counts(self) -> tuple[int, int]:
        """(requests waiting for a row, rows running)."""
        with self._lock:
            waiting = self._waiting()
            return waiting, len(self._live) - waiting

    def close(self, cancel: bool = False, timeout: float | None = None) -> None:
        """Stop taking requests; cancel the live ones (``cancel``) or let them finish; stop the Batchers."""
        with self._lock:
            self.accepting = False
            live = list(self._live)
        if cancel:
            for request in live:
                request.cancel()
        self.pool.close(timeout)


def _plugin(registry, field: str, name, default: str, server_args: dict, request_args):
    """The request's sampler / cache: its name (default: the server's) with the server's parameters
    (when it is the server's plugin) under the request's ``{field}_args``; a 400 names the field."""
    name = default if name is None else name
    params = {**(server_args if name == default else {}), **(request_args or {})}
    try:
        return registry.get(name, **params)
    except (ValueError, TypeError) as exc:
        unknown = str(exc).startswith("unknown")
        raise APIError(400, str(exc), param=field if unknown else f"{field}_args") from None


def _max_tokens(body: _Body) -> int | None:
    """``max_tokens``, or chat's ``max_completion_tokens`` (None when neither is given; 0 is refused
    later, not taken for "not given")."""
    chat = getattr(body, "max_completion_tokens", None)
    return chat if chat is not None else body.max_tokens


_RENAMED = {"gen_length": "max_tokens", "max_new_tokens": "max_tokens"}  # dllm's name -> the request's


def _config_field(message: str) -> str | None:
    """The config field a library message names (``GenerationConfig.gen_length=...`` -> gen_length)."""
    found = re.search(r"(?:GenerationConfig|SpeculativeConfig)\.(\w+)", message)
    return found.group(1) if found else None


def _param_of(message: str) -> str | None:
    """The request field a library message is about (``GenerationConfig.gen_length=...`` -> max_tokens)."""
    field = _config_field(message)
    if field is not None:
        return _RENAMED.get(field, field)
    return "prompt" if "prompt" in message else None


def _named(message: str) -> str:
    """A library message about a setting the request calls by another name, prefixed with that name."""
    field = _config_field(message)
    if field in _RENAMED:
        return f"{_RENAMED[field]} (dllm's {field}): {message}"
    return message


def _explain_blocks(message: str, body: _Body) -> str:
    """A GenerationConfig message, with where max_tokens' block size comes from when it is the server's."""
    message = _named(message)
    if "block_length" in message and body.block_length is None:
        return (
            f"{message} (max_tokens is the canvas length, gen_length; block_length is the server's"
            " --block-length unless the request sets block_length)"
        )
    return message
