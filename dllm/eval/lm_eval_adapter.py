"""lm-evaluation-harness model ``dllm``: any dllm model x sampler x cache behind lm-eval's ``LM`` API.

    dllm eval lm-eval --model dllm \\
        --model_args model=tiny-llada,sampler=fast-dllm,threshold=0.9,gen_length=64 \\
        --tasks dllm_gsm8k --limit 4
    lm_eval --model dllm --model_args model=tiny-llada \\
        --tasks dllm/eval/lm_eval_tasks/dllm_gsm8k.yaml --limit 4
    accelerate launch --multi_gpu --num_processes 2 -m dllm.eval lm-eval --model dllm ...   # data parallel

Registration: importing this module registers the model. ``dllm eval lm-eval`` (or
``python -m dllm.eval.lm_eval_adapter``) imports it, adds this package's task folder to
``--include_path`` and runs lm-eval's own CLI. The stock ``lm_eval`` command finds the model when
``--tasks`` names one of this package's task YAML files (or their folder): lm-eval resolves the
YAML's ``!function`` helpers, whose module imports this one, before it looks the model up. lm-eval
has no plugin entry points for models, so with ``--include_path`` + a task *name* the stock
command cannot know about ``dllm``.

``model_args``: ``model`` (shipped name, folder or hub id; alias ``pretrained``), ``sampler``
(default ``fast-dllm``), ``cache`` (default ``none``), ``k`` (tokens per step: steps =
ceil(gen_length / k)), any ``GenerationConfig`` field (``gen_length`` default 128,
``block_length`` default 32 or gen_length, ``steps``, ``temperature``...), any parameter of the
sampler or the cache by its own name (``threshold=0.9``), ``dtype``, ``stats_dir`` (per-request
speed records, ``rank<r>.jsonl``), ``threads`` (torch CPU threads; default half the cores split
over the ranks, unless ``OMP_NUM_THREADS`` is set), ``max_length`` (prompt + generation; longer
prompts are cut from the left). Batch size and device come from lm-eval's own ``--batch_size`` /
``--device`` (``cuda`` falls back to the CPU when there is no GPU). lm-eval's ``max_gen_toks`` is
ignored (a dLLM decodes a fixed canvas of ``gen_length``); it is kept in the speed records.

``generate_until`` groups requests with the same generation arguments, decodes each group in one
continuous-batching call (``--batch_size`` rows at once), cuts the text at
the first stop string, and records per request: steps, NFE, generated tokens before and after
the stop-string cut, tokens per forward / step, latency and throughput (``dllm.metrics``), and
the per-step unmask counts. ``loglikelihood`` is not implemented (multiple-choice tasks need an
ELBO estimate) and raises ``NotImplementedError`` saying so.

Data parallel works with both lm-eval styles: it keeps ``self.accelerator`` (lm-eval <= 0.4.11
calls ``lm.accelerator.gather`` and ``wait_for_everyone`` itself) and overrides ``all_gather``,
``gather_object`` and ``barrier`` (lm-eval >= 0.4.12 calls those hooks, which are no-ops in the
base class).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

# lm-eval's own models are registered first: lm-eval imports them only into an empty registry, so
# registering "dllm" before them would hide local-completions and the rest
import lm_eval.models  # noqa: F401
import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

import dllm
from dllm import metrics
from dllm.config import GenerationConfig
from dllm.eval.distributed import Distributed
from dllm.eval.spec import plugin_params, steps_for_k
from dllm.metrics import cut_at_stop  # noqa: F401 — re-exported: the adapter's stop rule

log = logging.getLogger("dllm.eval")
TASKS_DIR = Path(__file__).parent / "lm_eval_tasks"
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(GenerationConfig)} - {"trace"}


def _value(text):
    """lm-eval passes model_args values as strings or auto-cast scalars."""
    if not isinstance(text, str):
        return text
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@register_model("dllm", "dllm_diffusion")
class DLLMEvalLM(LM):
    """A dllm diffusion LM for lm-eval (see the module docstring for ``model_args``)."""

    def __init__(
        self,
        model: str | None = None,
        pretrained: str | None = None,
        sampler: str = "fast-dllm",
        cache: str = "none",
        k: int | None = None,
        batch_size=1,
        dtype=None,
        device=None,
        stats_dir: str | None = None,
        threads: int | None = None,
        max_batch_size=None,
        **kwargs,
    ):
        super().__init__()  # max_batch_size: lm-eval passes it; unused
        name = model or pretrained
        if not name:
            raise ValueError("model_args needs model=<shipped name | folder | hub id>")
        self._setup_distributed(device)
        if self._device.type == "cpu" and (threads or not os.environ.get("OMP_NUM_THREADS")):
            from dllm.eval.runner import cpu_threads

            torch.set_num_threads(int(_value(threads) or cpu_threads(self._world_size)))
        sampler_fields = plugin_params("sampler", dllm.samplers, sampler)
        cache_fields = plugin_params("cache", dllm.caches, cache)
        sampler_params, cache_params, config = {}, {}, {}
        for key, raw in kwargs.items():
            value = _value(raw)
            if key in sampler_fields:
                sampler_params[key] = value
            elif key in cache_fields:
                cache_params[key] = value
            elif key in _CONFIG_FIELDS:
                config[key] = value
            else:
                raise ValueError(
                    f"model_args {key}={raw!r} is not a parameter of sampler {sampler!r} "
                    f"({sorted(sampler_fields)}), cache {cache!r} ({sorted(cache_fields)}) "
                    f"or GenerationConfig ({sorted(_CONFIG_FIELDS)})"
                )
        config.setdefault("gen_length", 128)
        config.setdefault("block_length", min(32, config["gen_length"]))
        k = _value(k)
        if k is not None:
            config["steps"] = steps_for_k(config["gen_length"], int(k))
        self.config = GenerationConfig(**config, trace=True)
        self.sampler_name, self.sampler_params = sampler, sampler_params
        self.cache_name, self.cache_params = cache, cache_params
        dllm.samplers.get(sampler, **sampler_params)  # validate now, not at the first request
        dllm.caches.get(cache, **cache_params)
        self.batch_size = int(_value(batch_size) or 1) if str(batch_size) != "auto" else 1
        from dllm.eval.runner import load_eval_model
        from dllm.eval.spec import ModelEntry

        self.model = load_eval_model(
            ModelEntry(label=name, name=name, dtype=_value(dtype)), str(self._device)
        )
        self.model_name = name
        self.k = k
        self.stats_dir = Path(stats_dir) if stats_dir else None
        self.records: list[dict] = []
        self.summary: dict | None = None

    # ---- distributed -------------------------------------------------------------------------
    def _setup_distributed(self, device) -> None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        cuda = torch.cuda.is_available()
        if world > 1:
            import accelerate

            self.accelerator = accelerate.Accelerator(cpu=not cuda)  # sets up the process group
            self._dist = Distributed.from_env()
            self._rank, self._world_size = self._dist.rank, self._dist.world_size
            self._device = self.accelerator.device
        else:
            self.accelerator = None
            self._dist = Distributed()
            if device and str(device).startswith("cuda") and not cuda:
                device = None  # lm-eval's CLI passes --device cuda by default; this machine has none
            self._device = torch.device(device or ("cuda" if cuda else "cpu"))

    # lm-eval <= 0.4.11 reads these three from the model; newer base classes define them too
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    def all_gather(self, tensor):
        return self.accelerator.gather(tensor) if self.accelerator is not None else tensor

    def gather_object(self, obj, dst: int = 0):
        return self._dist.gather_object(obj, dst)

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    # ---- chat templates ------------------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return str(self.model_name).replace("/", "__")

    def chat_template(self, chat_template=False) -> str | None:
        tok = getattr(self.model, "tokenizer", None)
        return getattr(tok, "chat_template", None) or "" if chat_template else ""

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
        tok = getattr(self.model, "tokenizer", None)
        if tok is None or not getattr(tok, "chat_template", None):
            raise ValueError(
                f"the tokenizer of {self.model_name!r} has no chat template; drop --apply_chat_template"
            )
        return tok.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    # ---- requests ----------------------------------------------------------------------------------
    def loglikelihood(self, requests):
        raise NotImplementedError(
            "the dllm lm-eval model does not implement loglikelihood (multiple-choice / perplexity tasks "
            "need a Monte-Carlo ELBO estimate); run generate_until tasks such as dllm_gsm8k or dllm_humaneval"
        )

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError(
            "the dllm lm-eval model does not implement loglikelihood_rolling (perplexity)"
        )

    def _encode(self, context: str) -> tuple[list[int], bool]:
        ids = self.model.encode(context)
        limit = (
            min(self.config.max_length or self.model.max_length, self.model.max_length)
            - self.config.gen_length
        )
        if limit < 1:
            raise ValueError(
                f"gen_length={self.config.gen_length} leaves no room for a prompt in"
                f" {self.model.max_length} positions"
            )
        if len(ids) <= limit:
            return ids, False
        head = (
            [ids[0]]
            if getattr(self.model, "bos_id", None) is not None and ids[0] == self.model.bos_id
            else []
        )
        return head + ids[len(ids) - (limit - len(head)) :], True

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from tqdm import tqdm

        outputs: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="dllm generate_until")
        writer = self._stats_writer()
        for indices in groups.values():
            gen_kwargs = dict(requests[indices[0]].args[1])
            config = self.config
            if gen_kwargs.get("do_sample") and float(gen_kwargs.get("temperature") or 0) > 0:
                config = dataclasses.replace(config, temperature=float(gen_kwargs["temperature"]))
            encoded = {i: self._encode(requests[i].args[0]) for i in indices}
            order = sorted(indices, key=lambda i: -len(encoded[i][0]))  # similar lengths share a batch
            # one continuous-batching call per group: batch_size rows run at once, finished rows
            # leave and waiting requests join (each result equals the request alone)
            results = dllm.generate(
                self.model,
                [encoded[i][0] for i in order],
                sampler=dllm.samplers.get(self.sampler_name, **self.sampler_params),
                cache=dllm.caches.get(self.cache_name, **self.cache_params),
                config=config,
                max_batch=self.batch_size,
            )
            for i, res in zip(order, results):
                text, stop = cut_at_stop(res.text, gen_kwargs.get("until"))
                outputs[i] = text
                rec = self._record(requests[i], res, text, stop, results, encoded[i], gen_kwargs)
                self.records.append(rec)
                if writer is not None:
                    writer.write(json.dumps(rec) + "\n")
                    writer.flush()
            bar.update(len(order))
        bar.close()
        if writer is not None:
            writer.close()
        self._summarize()
        return outputs

    def _stats_writer(self):
        if self.stats_dir is None:
            return None
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        return open(self.stats_dir / f"rank{self.rank}.jsonl", "a", encoding="utf-8")

    def _record(self, req, res, text: str, stop, batch: list, encoded, gen_kwargs) -> dict:
        kept = res.gen_tokens if stop is None else len(self.model.encode(text, add_bos=False)) if text else 0
        batch_size = len(batch)
        latency = metrics.batch_seconds(batch) / batch_size
        task, doc_id = (req.metadata[0], req.metadata[1]) if getattr(req, "metadata", None) else (None, None)
        return {
            "task": task,
            "doc_id": doc_id,
            "rank": self.rank,
            "model": self.model_name,
            "sampler": self.sampler_name,
            "sampler_params": self.sampler_params,
            "k": self.k,
            "cache": self.cache_name,
            "cache_params": self.cache_params,
            "gen_length": self.config.gen_length,
            "block_length": self.config.block_length,
            "steps_setting": self.config.steps,
            "max_gen_toks_ignored": gen_kwargs.get("max_gen_toks"),
            "prompt_tokens": len(encoded[0]),
            "prompt_truncated": encoded[1],
            "steps": res.steps,
            "nfe": res.nfe,
            "gen_tokens_before_stop": res.gen_tokens,
            "gen_tokens": kept,
            "stop": stop,
            "tokens_per_forward": metrics.tokens_per_forward(kept, res.nfe),
            "tokens_per_step": metrics.tokens_per_step(kept, res.steps),
            "latency_s": latency,
            "batch_size": batch_size,  # requests in the continuous-batching call
            "max_batch": self.batch_size,
            "tokens_per_second": metrics.throughput(kept, latency),
            "unmask_counts": [len(s.positions) for s in res.trace],
            "time": time.time(),
        }

    def _summarize(self) -> None:
        """Per-rank totals gathered on rank 0, logged and kept in ``self.summary`` (and stats_dir)."""
        mine = {
            "requests": len(self.records),
            "gen_tokens": sum(r["gen_tokens"] for r in self.records),
            "nfe": sum(r["nfe"] for r in self.records),
            "steps": sum(r["steps"] for r in self.records),
            "seconds": sum(r["latency_s"] for r in self.records),
        }
        gathered = self.gather_object(mine)
        if self.rank != 0:
            return
        total = {key: sum(g[key] for g in gathered) for key in mine}
        total["ranks"] = len(gathered)
        total["tokens_per_forward"] = metrics.tokens_per_forward(total["gen_tokens"], total["nfe"])
        total["tokens_per_step"] = metrics.tokens_per_step(total["gen_tokens"], total["steps"])
        # ranks run concurrently: wall time is the slowest rank's, throughput counts every rank's tokens
        total["tokens_per_second"] = metrics.throughput(
            total["gen_tokens"], max(g["seconds"] for g in gathered)
        )
        self.summary = total
        log.warning(
            "dllm speed: %s",
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in total.items()}),
        )
        if self.stats_dir is not None:
            (self.stats_dir / "summary.json").write_text(json.dumps(total, indent=1))

    def get_model_info(self) -> dict:
        return {
            "dllm_model": self.model_name,
            "sampler": self.sampler_name,
            "sampler_params": self.sampler_params,
            "cache": self.cache_name,
            "cache_params": self.cache_params,
            "generation_config": self.config.to_dict(),
        }


def cli_main(argv: list[str] | None = None) -> int:
    """Run lm-eval's CLI with ``dllm`` registered and this package's task folder on the include path."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if "--include_path" not in args:  # lm-eval's CLI takes one include path; a user's own wins
        args += ["--include_path", str(TASKS_DIR)]
    from lm_eval.__main__ import cli_evaluate

    saved = sys.argv
    sys.argv = ["lm_eval", *args]
    try:
        cli_evaluate()
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
