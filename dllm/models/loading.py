"""Load and save Hugging Face checkpoint folders of supported dLLMs.

``load(path_or_name)`` accepts a shipped model name (``tiny-llada``...), a local folder, or a
hub id (downloaded through ``huggingface_hub`` when the machine is online). It reads the
native config, the safetensors weights (single file or sharded with an index), and the
tokenizer, and returns a ``DiffusionModel`` that knows its mask id, EOS ids and logit shift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import config as config_mod
from . import weights as weights_mod
from .config import ModelConfig
from .lazy import from_transformers
from .transformer import Transformer

_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_EOT_TOKENS = ("<|eot_id|>", "<|im_end|>")


def chat_text(tokenizer, name: str, text: str | list[dict]) -> str:
    """``text`` as one user turn (or a list of ``{"role", "content"}`` messages, a conversation) in
    the tokenizer's chat template, ready for the assistant's answer."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"the tokenizer of {name!r} has no chat template; drop the chat option")
    messages = [{"role": "user", "content": text}] if isinstance(text, str) else text
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@dataclass
class DiffusionModel:
    """A loaded dLLM: the network plus the token facts every sampler needs."""

    net: Transformer
    config: ModelConfig
    tokenizer: Any
    mask_id: int
    eos_ids: list[int]
    pad_id: int
    bos_id: int | None
    name: str
    path: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def shift(self) -> int:
        return 1 if self.config.shift_logits else 0

    @property
    def device(self) -> torch.device:
        return self.net.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.embed.weight.dtype

    @property
    def max_length(self) -> int:
        return self.config.max_seq_len

    def encode(self, text: str | list[dict], add_bos: bool = True, chat: bool = False) -> list[int]:
        """Token ids of a prompt; ``chat=True`` wraps it as one user turn of the tokenizer's chat template
        (or, given a list of messages, the conversation: ``chat_text``)."""
        if self.tokenizer is None:
            raise ValueError(
                f"model {self.name!r} was loaded without a tokenizer; pass token ids instead of text"
            )
        if chat:
            text = chat_text(self.tokenizer, self.name, text)
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if add_bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [self.bos_id] + ids
        return ids

    def decode(self, ids) -> str:
        if self.tokenizer is None:
            return " ".join(str(i) for i in ids)
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def resolve_tokens(self, strings) -> list[int]:
        """Token ids for strings that must each be a single token (delimiters, stop words)."""
        ids = []
        for text in strings:
            encoded = self.tokenizer.encode(text, add_special_tokens=False)
            if len(encoded) != 1:
                raise ValueError(f"{text!r} is not a single token for {self.name} (it encodes as {encoded})")
            ids.append(encoded[0])
        return ids


@dataclass
class CausalLM:
    """An autoregressive Hugging Face causal LM (the verifier side of draft-and-verify)."""

    net: Any
    tokenizer: Any
    eos_ids: list[int]
    name: str
    path: Path | None = None

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def vocab_size(self) -> int:
        """Width of the logits (the LM head may be padded beyond the tokenizer)."""
        return int(self.net.get_output_embeddings().weight.shape[0])

    @property
    def max_length(self) -> int:
        return int(getattr(self.net.config, "max_position_embeddings", None) or 1 << 30)

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id if self.tokenizer is not None else None
        return int(pad) if pad is not None else self.eos_ids[0]

    def encode(self, text: str | list[dict], add_bos: bool = True, chat: bool = False) -> list[int]:
        if chat:
            text = chat_text(self.tokenizer, self.name, text)
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        bos = self.tokenizer.bos_token_id
        return [bos] + ids if add_bos and bos is not None and (not ids or ids[0] != bos) else ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


_CAUSAL_LM_TYPES = ("qwen2", "llama", "mistral", "qwen3", "gpt2")


def _quiet_transformers():
    """Silence transformers' warnings, load reports and progress bars while we load (we report
    problems ourselves)."""
    import contextlib

    from transformers.utils import logging as hf_logging

    @contextlib.contextmanager
    def quiet():
        verbosity = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()

    return quiet()


def _load_causal_lm(folder: Path, name: str, dtype, device, model_type: str = "") -> CausalLM:
    AutoModelForCausalLM = from_transformers("AutoModelForCausalLM")

    weights = _weight_files(folder)[
        0
    ]  # clear errors for missing or unreadable weights before transformers looks
    for path in weights:
        _check_safetensors_header(path)
    with _quiet_transformers():
        try:
            # mismatched shapes are reported below, by tensor name (transformers would only suggest
            # ignore_mismatched_sizes); the model is refused either way
            net, info = AutoModelForCausalLM.from_pretrained(
                str(folder),
                dtype=dtype or torch.float32,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
            )
        except Exception as exc:  # corrupted weights, configs transformers rejects, ...
            raise ValueError(
                f"{folder}: transformers could not load this {model_type or 'causal LM'} checkpoint"
                f" ({type(exc).__name__}: {exc})"
            ) from exc
    problems = {
        kind: sorted(str(k) for k in info.get(kind) or []) for kind in ("missing_keys", "unexpected_keys")
    }
    mismatched = sorted(k for k in info.get("mismatched_keys") or [] if isinstance(k, tuple) and len(k) == 3)
    if mismatched and not any(problems.values()):
        name, found, expected = mismatched[0]
        raise ValueError(f"{folder}: {shape_mismatch(name, found, expected, len(mismatched) - 1)}")
    problems["mismatched_keys"] = sorted(
        str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or []
    )
    if any(problems.values()):
        listed = "; ".join(
            f"{kind.split('_')[0]} {names[:6]}{' ...' if len(names) > 6 else ''} ({len(names)})"
            for kind, names in problems.items()
            if names
        )
        raise ValueError(
            f"{folder}: the weights in {', '.join(w.name for w in weights)} do not match the architecture"
            f" config.json declares (model_type={model_type!r}): {listed}; refusing to run a partly random"
            " model"
        )
    for param_name, param in net.state_dict().items():
        if param.is_floating_point():
            _check_finite(param_name, param, None, param.dtype)
    net = net.to(device).eval()
    tok = _load_tokenizer(folder)
    check_tokenizer_fits(folder, tok, int(net.get_input_embeddings().weight.shape[0]))
    eos = config_mod._as_id_list(net.config.eos_token_id) or [tok.eos_token_id]
    return CausalLM(net=net, tokenizer=tok, eos_ids=sorted(set(eos)), name=name, path=folder)


def _shipped_models() -> dict[str, Path]:
    from dllm.shipped import shipped_models

    return shipped_models()


def resolve_path(name_or_path: str | Path) -> Path:
    shipped = _shipped_models()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    if "\x00" in str(name_or_path):
        raise ValueError(
            f"model {str(name_or_path)!r} is not a valid name or path (it contains a NUL character)"
        )
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(
                f"{path} is a file; expected a checkpoint folder with config.json and *.safetensors"
            )
        return path
    if "/" in str(name_or_path) and not str(name_or_path).startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            return Path(
                snapshot_download(
                    str(name_or_path),
                    allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "*.tiktoken"],
                )
            )
        except Exception as exc:  # network errors, unknown repos, gated repos
            raise FileNotFoundError(
                f"{name_or_path!r} is not a local folder and could not be fetched from the"
                f" Hugging Face hub ({exc})"
            ) from exc
    raise FileNotFoundError(
        f"model {str(name_or_path)!r} not found: not a shipped model ({', '.join(sorted(shipped))}),"
        " not a local folder, not a hub id"
    )


def read_json(path: Path, what: str = "a JSON object") -> dict:
    """A JSON object from ``path``; a ValueError naming the file when it is not valid JSON or not
    an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold {what}, found a JSON {type(value).__name__}")
    return value


def _weight_files(folder: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The safetensors files of a checkpoint folder, and the index's weight map when it is sharded."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        weight_map = read_json(index).get("weight_map")
        if (
            not isinstance(weight_map, dict)
            or not weight_map
            or not all(isinstance(v, str) for v in weight_map.values())
        ):
            raise ValueError(f"{index} has no weight_map (tensor name -> shard file)")
        shards = []
        for shard in sorted(set(weight_map.values())):
            shard_path = folder / shard
            if not shard_path.exists():
                raise FileNotFoundError(f"shard {shard} listed in {index.name} is missing from {folder}")
            shards.append(shard_path)
        return shards, weight_map
    single = folder / "model.safetensors"
    if not single.exists():
        raise FileNotFoundError(
            f"no weights in {folder}: expected model.safetensors or model.safetensors.index.json"
            " with its shards"
        )
    return [single], None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors' SafetensorError (bad header, truncated data), OSError
        raise ValueError(
            f"{path}: cannot read the safetensors weights, the file is truncated or corrupted"
            f" ({type(exc).__name__}: {exc})"
        ) from None


def _check_safetensors_header(path: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt"):
            pass
    except Exception as exc:
        raise ValueError(
            f"{path}: cannot read the safetensors weights, the file is truncated or corrupted"
            f" ({type(exc).__name__}: {exc})"
        ) from None


def read_state_dict(folder: Path, sources: dict[str, Path] | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder (single file or shards); ``sources`` (if given) is filled with
    the file each tensor came from."""
    state = {}
    for path in _weight_files(folder)[0]:
        tensors = _read_safetensors(path)
        if sources is not None:
            sources.update(dict.fromkeys(tensors, path))
        state.update(tensors)
    return state


def _check_finite(name: str, tensor: torch.Tensor, source, dtype: torch.dtype) -> None:
    """ValueError naming the tensor (and file) when any of its values is NaN or infinite."""
    flat = tensor.reshape(-1)
    chunk = 1 << 24
    if all(bool(torch.isfinite(flat[i : i + chunk]).all()) for i in range(0, flat.numel(), chunk)):
        return
    bad = int((~torch.isfinite(flat)).sum())
    where = f" in {source}" if source is not None else ""
    raise ValueError(
        f"checkpoint tensor {name}{where} has {bad} non-finite value(s) (NaN or inf) of {flat.numel()}"
        f" (as {str(dtype).replace('torch.', '')}); the weights are corrupted or overflow this dtype"
    )


def shape_mismatch(name: str, found, expected, more: int = 0) -> ValueError:
    """The error for a checkpoint tensor whose shape is not the one config.json implies (both loaders)."""
    others = f" (and {more} more tensor(s) of the wrong shape)" if more else ""
    return ValueError(
        f"checkpoint tensor {name} has shape {tuple(found)}, config.json implies {tuple(expected)}{others}"
    )


def check_tokenizer_fits(folder: Path, tokenizer, rows: int, field: str = "vocab_size") -> None:
    """ValueError naming both numbers when the tokenizer has ids the model's embedding cannot hold.

    An embedding larger than the tokenizer is normal (checkpoints pad it, e.g. to a multiple of 64);
    a tokenizer with more tokens than the embedding has rows means they were not trained together."""
    vocab = tokenizer.get_vocab()
    top = max(vocab.values(), default=-1)
    if top < rows:
        return
    beyond = [token for token, i in sorted(vocab.items(), key=lambda item: item[1]) if i >= rows]
    raise ValueError(
        f"{folder}: the tokenizer has {len(tokenizer)} tokens (ids up to {top}), but config.json's"
        f" {field} is {rows} (the rows of the embedding): token ids from {rows} on ({len(beyond)} tokens,"
        f" e.g. {beyond[:3]}) cannot be embedded; the tokenizer and the weights do not belong together"
    )


def _build_net(
    cfg: ModelConfig, state: dict, folder: Path, dtype: torch.dtype, sources: dict[str, Path] | None = None
) -> Transformer:
    state = {k: v for k, v in state.items() if not k.endswith(_IGNORED_SUFFIXES)}
    internal, unknown = weights_mod.to_internal(cfg.arch, state)
    if cfg.tie_embeddings:
        internal.pop("lm_head.weight", None)
    with torch.device("meta"):
        net = Transformer(cfg)
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    missing = sorted(set(shapes) - set(internal))
    if unknown or missing:
        native_missing = [next(iter(weights_mod.to_native(cfg.arch, {k: None}))) for k in missing]
        more = lambda names: f"{names[:6]}{' ...' if len(names) > 6 else ''} ({len(names)})"  # noqa: E731
        found = [
            f"{kind} tensors {more(names)}"
            for kind, names in (("missing", native_missing), ("unexpected", sorted(unknown)))
            if names
        ]
        raise ValueError(
            f"checkpoint {folder} does not match the {cfg.arch} architecture config.json declares"
            f" ({cfg.n_layers} layers): {', '.join(found)}"
        )
    native_name = {k: next(iter(weights_mod.to_native(cfg.arch, {k: None}))) for k in internal}
    for name, tensor in internal.items():
        if tensor.shape != shapes[name]:
            raise shape_mismatch(native_name[name], tensor.shape, shapes[name])
        if not tensor.is_floating_point():
            raise ValueError(
                f"checkpoint tensor {native_name[name]} has dtype {str(tensor.dtype).replace('torch.', '')};"
                " model weights must be floating point"
            )
    converted = {}
    for name, tensor in internal.items():
        converted[name] = tensor.to(dtype)
        _check_finite(native_name[name], converted[name], (sources or {}).get(native_name[name]), dtype)
    net = net.to_empty(device="cpu")
    net.load_state_dict(converted, strict=True)
    return net.eval()


# Files a tokenizer can be built from besides tokenizer.json (BPE, SentencePiece, WordPiece, tiktoken).
_VOCABULARY_FILES = ("vocab.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.txt")


def _load_tokenizer(folder: Path):
    AutoTokenizer = from_transformers("AutoTokenizer")

    vocabularies = [n for n in _VOCABULARY_FILES if (folder / n).exists()] + sorted(
        p.name for p in folder.glob("*.tiktoken")
    )
    if not (folder / "tokenizer.json").exists() and not vocabularies:
        present = [n for n in ("tokenizer_config.json", "special_tokens_map.json") if (folder / n).exists()]
        has = f" ({' and '.join(present)} alone cannot build one)" if present else ""
        raise FileNotFoundError(
            f"no tokenizer in {folder}: tokenizer.json is missing{has}, and there is no vocabulary file"
            f" to build one from ({', '.join(_VOCABULARY_FILES)}, *.tiktoken); copy the checkpoint's"
            " tokenizer.json there, or load with tokenizer=False and pass token ids"
        )
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # AutoTokenizer warns about config.json model types it does not know
    try:
        if _declared_tokenizer_class(folder) == "PreTrainedTokenizerFast":
            # transformers 5 picks the tokenizer class from config.json's model_type (a Qwen2 folder
            # gets Qwen2Tokenizer, whose pre-tokenizer splits digits differently); honour the folder's
            # own declaration instead.
            PreTrainedTokenizerFast = from_transformers("PreTrainedTokenizerFast")

            return PreTrainedTokenizerFast.from_pretrained(str(folder))
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as exc:  # a corrupt tokenizer.json, a SentencePiece model without sentencepiece, ...
        files = ["tokenizer.json"] if (folder / "tokenizer.json").exists() else vocabularies
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{folder}: transformers could not build the tokenizer from {', '.join(files)}"
            f" ({type(exc).__name__}: {first})"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)


def _declared_tokenizer_class(folder: Path) -> str | None:
    config = folder / "tokenizer_config.json"
    if not config.exists():
        return None
    try:
        return json.loads(config.read_text()).get("tokenizer_class")
    except json.JSONDecodeError as err:
        raise ValueError(f"{config} is not valid JSON: {err}") from None


def _eos_ids(cfg: ModelConfig, folder: Path, tokenizer) -> list[int]:
    ids = list(cfg.eos_token_ids)
    gen = folder / "generation_config.json"
    if gen.exists():
        ids += config_mod._as_id_list(read_json(gen).get("eos_token_id"))
    if tokenizer is not None:
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        vocab = tokenizer.get_vocab()
        ids += [vocab[t] for t in _EOT_TOKENS if t in vocab]
    return sorted(set(int(i) for i in ids))


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, or a ``ValueError`` naming the problem when it is malformed or
    this machine's torch cannot use it (e.g. ``cuda`` without a GPU), before any tensor moves there."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device ({exc})") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: torch sees no CUDA GPU here (torch {torch.__version__})")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return resolved


_ADDED_MASK_TOKEN = "|<MASK>|"


def _check_block_size(raw: dict, block_size, config_file: Path) -> None:
    """``load(block_size=N)``: the checkpoint must be a block-diffusion model trained with
    ``bd_size == N``."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size={block_size!r} must be a positive integer")
    bd_size = raw.get("bd_size")
    if bd_size is None:
        raise ValueError(
            f"{config_file}: block_size={block_size} asks for a block-diffusion model, but this checkpoint"
            f" (model_type={raw.get('model_type')!r}) has no bd_size: it was not trained with"
            " block-causal attention;"
            " load it without block_size"
        )
    if bd_size != block_size:
        raise ValueError(
            f"{config_file}: block_size={block_size}, but the checkpoint was trained with bd_size={bd_size};"
            f" its block-causal attention only matches blocks of {bd_size}"
        )


def load(
    name_or_path: str | Path,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
    tokenizer: bool = True,
    block_size: int | None = None,
) -> DiffusionModel | CausalLM:
    """Load a dLLM checkpoint folder, shipped model name or hub id.

    Autoregressive checkpoints (Qwen2, Llama, ...) load as a ``CausalLM`` through transformers.
    ``block_size``: require a block-diffusion checkpoint (Fast-dLLM v2) trained with this block size.
    """
    folder = resolve_path(name_or_path)
    config_file = folder / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"no config.json in {folder}")
    raw = read_json(config_file, "a model config (a JSON object)")
    device = resolve_device(device)
    model_type = str(raw.get("model_type", "")).lower()
    if block_size is not None:
        _check_block_size(raw, block_size, config_file)
    if model_type in _CAUSAL_LM_TYPES:
        return _load_causal_lm(
            folder,
            str(name_or_path),
            _DTYPES.get(dtype) if isinstance(dtype, str) else dtype,
            device,
            model_type,
        )
    try:
        cfg = config_mod.from_native(raw)
    except ValueError as exc:
        raise ValueError(f"{config_file}: {exc}") from None
    if dtype is None:
        dtype = _DTYPES.get(str(cfg.torch_dtype), torch.float32) if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r} is not supported; choose one of {sorted(_DTYPES)}")
        dtype = _DTYPES[dtype]
    sources: dict[str, Path] = {}
    net = _build_net(cfg, read_state_dict(folder, sources), folder, dtype, sources).to(device)
    tok = _load_tokenizer(folder) if tokenizer else None
    mask_id = cfg.mask_token_id
    if mask_id is None and tok is not None:
        mask_id = tok.mask_token_id
    if mask_id is None and tok is not None:  # Fast-dLLM v2 adds |<MASK>| as an extra special token
        mask_id = tok.get_vocab().get(_ADDED_MASK_TOKEN)
    if mask_id is None:
        raise ValueError(
            f"{folder}: neither config.json (mask_token_id) nor the tokenizer defines a mask token;"
            " a masked diffusion model needs one"
        )
    if tok is not None and tok.mask_token_id is not None and tok.mask_token_id != mask_id:
        raise ValueError(
            f"{folder}: config mask_token_id={mask_id} but the tokenizer's mask token is {tok.mask_token_id}"
        )
    if not 0 <= mask_id < cfg.vocab_size:
        raise ValueError(f"mask token id {mask_id} is outside the vocabulary of size {cfg.vocab_size}")
    if tok is not None:
        field = "embedding_size" if cfg.arch == "llada" and raw.get("embedding_size") is not None else None
        check_tokenizer_fits(folder, tok, cfg.vocab_size, field or "vocab_size")
    eos_ids = _eos_ids(cfg, folder, tok)
    if not eos_ids:
        raise ValueError(f"{folder}: no EOS token id in config.json, generation_config.json or the tokenizer")
    pad_id = cfg.pad_token_id
    if pad_id is None and tok is not None:
        pad_id = tok.pad_token_id
    if pad_id is None or pad_id == mask_id:
        pad_id = eos_ids[0]
    bos_id = (
        cfg.bos_token_id if cfg.bos_token_id is not None else (tok.bos_token_id if tok is not None else None)
    )
    return DiffusionModel(
        net=net,
        config=cfg,
        tokenizer=tok,
        mask_id=int(mask_id),
        eos_ids=eos_ids,
        pad_id=int(pad_id),
        bos_id=None if bos_id is None else int(bos_id),
        name=str(name_or_path),
        path=folder,
    )


def save_pretrained(
    net: Transformer, folder: str | Path, tokenizer=None, dtype: torch.dtype = torch.float32
) -> Path:
    """Write ``net`` as a native checkpoint folder (config.json + model.safetensors [+ tokenizer])."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    native = weights_mod.to_native(
        net.cfg.arch, {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}
    )
    save_file(native, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config_mod.to_native(net.cfg), indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return folder
