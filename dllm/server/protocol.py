"""The OpenAI wire format: request bodies (checked with pydantic, strictly), errors, responses, chunks.

A body is checked field by field: a field of the wrong type, an unknown field, or an OpenAI
feature dllm does not have (``logprobs``, ``echo``, ``tools``, penalties, ...) set to anything but
its default is a 400 that names the field. dllm's own settings ride in the same body (the
``openai`` client's ``extra_body``): ``sampler``, ``sampler_args``, ``cache``, ``cache_args``,
``block_length``, ``steps``, ... (``DLLM_FIELDS``); they are checked by the Python API's own code
(``dllm.server.service``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

MAX_CHOICES = 16  # n
MAX_PROMPTS = 64  # prompts of one completions request
MAX_STOPS = 16  # stop strings (OpenAI's API takes 4; lm-eval's tasks send more, e.g. humaneval's 5)


class APIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    KINDS = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        405: "invalid_request_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
        500: "server_error",
        503: "server_error",
    }

    def __init__(self, status: int, message: str, *, param=None, code=None, headers=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        kind = self.KINDS.get(self.status, "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


# ---- request bodies -------------------------------------------------------------------------

DLLM_FIELDS = {  # dllm's own per-request settings, and what they are (README, "dllm serve")
    "sampler": "diffusion: the sampler (a registered name, see `dllm samplers`)",
    "sampler_args": "diffusion: the sampler's parameters (an object)",
    "cache": "diffusion: the cache policy (see `dllm caches`)",
    "cache_args": "diffusion: the cache's parameters (an object)",
    "block_length": "diffusion: the semi-autoregressive block size",
    "steps": "diffusion: denoising steps (schedule-based samplers)",
    "sub_block_length": "diffusion: sub-block size of block-diffusion models",
    "cfg_scale": "diffusion: classifier-free guidance weight",
    "logits_eos_inf": "diffusion: EOS is never proposed",
    "confidence_eos_eot_inf": "diffusion: EOS/EoT are committed last",
    "stop_at_eos": "diffusion: a row stops once its answer ends with EOS",
    "top_k": "speculative decoding: top-k filtering of the verifier's distribution",
    "allow_special": "let prompt text contain special-token text (read as those tokens)",
    "dllm_canvas": "streaming a diffusion model: also send the whole canvas after every step",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None  # the served model's name (OpenAI requires it; dllm serves one model)
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict | None = None
    user: str | None = None  # accepted, not used
    # OpenAI features dllm does not have: refused unless left at their defaults
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict | None = None
    logprobs: Any = None
    top_logprobs: int | None = None
    # dllm
    sampler: str | None = None
    sampler_args: dict | None = None
    cache: str | None = None
    cache_args: dict | None = None
    block_length: int | None = None
    steps: int | None = None
    sub_block_length: int | None = None
    cfg_scale: float | None = None
    logits_eos_inf: bool | None = None
    confidence_eos_eot_inf: bool | None = None
    stop_at_eos: bool | None = None
    top_k: int | None = None
    allow_special: bool = False
    dllm_canvas: bool = False


class CompletionBody(_Body):
    prompt: str | list[int] | list[str] | list[list[int]]
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None


class ChatBody(_Body):
    messages: list[dict]
    max_completion_tokens: int | None = None  # newer clients' name for max_tokens
    tools: list | None = None
    tool_choice: Any = None
    functions: list | None = None
    function_call: Any = None
    response_format: dict | None = None
    parallel_tool_calls: bool | None = None


_DESCRIPTIONS = {
    "prompt": "text, a list of token ids, or a list of either (a batch)",
    "stop": f"a string or a list of up to {MAX_STOPS} strings",
    "messages": "a list of {'role', 'content'} objects",
}

_UNSUPPORTED = {  # field -> (its default, why it is refused)
    "presence_penalty": (0, "penalties are not supported"),
    "frequency_penalty": (0, "penalties are not supported"),
    "logit_bias": ({}, "logit_bias is not supported"),
    "logprobs": (False, "log-probabilities are not returned"),
    "top_logprobs": (0, "log-probabilities are not returned"),
    "echo": (False, "echo is not supported"),
    "suffix": ("", "suffix (insertion) is not supported"),
    "tools": ([], "tool calls are not supported"),
    "tool_choice": ("none", "tool calls are not supported"),
    "functions": ([], "function calls are not supported"),
    "function_call": ("none", "function calls are not supported"),
    "parallel_tool_calls": (False, "tool calls are not supported"),
}


def parse_body(kind: type[_Body], data) -> _Body:
    """The checked body, or a 400 naming the first bad field."""
    if not isinstance(data, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(data).__name__}")
    try:
        body = kind.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else None
        if error["type"] == "extra_forbidden":
            raise APIError(
                400,
                f"unknown field {field!r}; OpenAI's fields and dllm's own ({', '.join(DLLM_FIELDS)}) are"
                " accepted (README, 'dllm serve')",
                param=field,
            ) from None
        if error["type"] == "missing":
            raise APIError(400, f"{field} is required", param=field) from None
        what = _DESCRIPTIONS.get(field, error["msg"][0].lower() + error["msg"][1:])
        got = data.get(field) if field in data else error.get("input")
        raise APIError(400, f"{field}={got!r}: {what}", param=field) from None
    for field, (default, why) in _UNSUPPORTED.items():
        value = getattr(body, field, None)
        if value is not None and value != default:
            raise APIError(400, f"{field}={value!r}: {why} by dllm serve", param=field)
    _check_common(body)
    return body


def _check_common(body: _Body) -> None:
    if isinstance(body, CompletionBody) and body.best_of not in (None, body.n):
        raise APIError(400, f"best_of={body.best_of}: only best_of = n is supported", param="best_of")
    if isinstance(body, ChatBody):
        if body.max_tokens is not None and body.max_completion_tokens is not None:
            raise APIError(
                400, "max_tokens and max_completion_tokens are the same setting; give one", param="max_tokens"
            )
        fmt = (body.response_format or {}).get("type", "text")
        if fmt != "text":
            raise APIError(
                400, f"response_format type {fmt!r} is not supported (only 'text')", param="response_format"
            )
    if not 1 <= body.n <= MAX_CHOICES:
        raise APIError(400, f"n={body.n} is out of range; allowed 1 to {MAX_CHOICES}", param="n")
    stops = [body.stop] if isinstance(body.stop, str) else body.stop or []
    if len(stops) > MAX_STOPS or any(not s for s in stops):
        raise APIError(400, f"stop={body.stop!r}: {_DESCRIPTIONS['stop']}, none empty", param="stop")
    if body.stream_options is not None:
        if not body.stream:
            raise APIError(400, "stream_options is only allowed with stream=true", param="stream_options")
        unknown = set(body.stream_options) - {"include_usage"}
        usage = body.stream_options.get("include_usage", False)
        if unknown or not isinstance(usage, bool):
            raise APIError(
                400, "stream_options takes one setting, include_usage (true or false)", param="stream_options"
            )
    if body.dllm_canvas and not body.stream:
        raise APIError(400, "dllm_canvas streams the canvas: it needs stream=true", param="dllm_canvas")


def stop_strings(body: _Body) -> list[str]:
    return [body.stop] if isinstance(body.stop, str) else list(body.stop or [])


def prompts_of(body: CompletionBody) -> list:
    """The completions request's prompts: one (text or token ids) or a batch of them."""
    prompt = body.prompt
    batch = [prompt] if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)) else list(prompt)
    if not batch:
        raise APIError(400, "prompt is an empty list; give text or token ids", param="prompt")
    if len(batch) > MAX_PROMPTS:
        raise APIError(400, f"prompt has {len(batch)} prompts; at most {MAX_PROMPTS}", param="prompt")
    return batch


# ---- responses ------------------------------------------------------------------------------


class Reply:
    """The id, object names and timestamp of one response (and of all its chunks)."""

    def __init__(self, chat: bool, model: str):
        self.chat, self.model = chat, model
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def response(self, choices: list[dict], usage: dict) -> dict:
        """``choices``: ``{"index", "text", "finish_reason", "dllm"}`` each."""
        out = []
        for c in choices:
            if self.chat:
                body = {"message": {"role": "assistant", "content": c["text"]}}
            else:
                body = {"text": c["text"]}
            out.append(
                {
                    "index": c["index"],
                    **body,
                    "finish_reason": c["finish_reason"],
                    "logprobs": None,
                    "dllm": c["dllm"],
                }
            )
        return {
            **self._head("chat.completion" if self.chat else "text_completion"),
            "choices": out,
            "usage": usage,
        }

    def chunk(self, index: int, text: str | None = None, finish_reason=None, *, role=False, **extra) -> dict:
        """One streamed choice update; ``extra`` (e.g. ``dllm``) rides in the choice."""
        if self.chat:
            delta = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            body = {"delta": delta}
        else:
            body = {"text": text or ""}
        choice = {"index": index, **body, "finish_reason": finish_reason, "logprobs": None, **extra}
        return {
            **self._head("chat.completion.chunk" if self.chat else "text_completion"),
            "choices": [choice],
        }

    def usage_chunk(self, usage: dict) -> dict:
        return {
            **self._head("chat.completion.chunk" if self.chat else "text_completion"),
            "choices": [],
            "usage": usage,
        }


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
