"""Prompts from users: text or token ids in, checked token id lists out.

The rules (README, "Prompts"):

- a prompt is ``str`` text or a sequence of integer token ids (a list, a 1-D tensor); a batch is a
  list of them (or a 2-D tensor). ``bytes`` are refused with a ``TypeError``: decode them first.
- text must be valid Unicode that can be written as UTF-8: a lone surrogate (what Python makes of
  a non-UTF-8 command-line argument) is a ``ValueError`` naming its position.
- text that is empty or only whitespace is refused, even though a BOS token would be added; so is
  an empty id list. In a batch, the error names the row.
- text that the tokenizer turns into a special token (the mask token, EOS, BOS, pad, any special
  added token) is refused with a ``ValueError`` naming the token: the mask token's text in a prompt
  would otherwise become a mask and be decoded over. ``allow_special=True`` lets it through, for
  callers who mean it.
- token ids are taken as given (special ids included), only checked against the vocabulary.
"""

from __future__ import annotations

import numbers
import operator
from typing import Sequence

__all__ = ["check_text", "encode_chat", "encode_prompts", "special_token_ids"]

CHAT_ROLES = ("system", "user", "assistant")


def _label(row: int, count: int) -> str:
    return "the prompt" if count == 1 else f"prompt {row} (of {count})"


def check_text(text: str, label: str = "the prompt") -> None:
    """``ValueError`` if ``text`` is empty / whitespace or cannot be encoded as UTF-8 (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        escaped = 0xDC80 <= ord(bad) <= 0xDCFF  # how Python decodes undecodable bytes (e.g. non-UTF-8 argv)
        why = (
            (
                "undecodable byte 0x%02x (input that is not UTF-8,"
                " e.g. a command-line argument in another encoding)" % (ord(bad) - 0xDC00)
            )
            if escaped
            else f"lone surrogate {bad!r}"
        )
        raise ValueError(f"{label} is not valid text: {why} at character {exc.start}") from None
    if not text.strip():
        raise ValueError(
            f"empty prompt: {label} is {'only whitespace' if text else 'empty'}; a prompt needs some text"
            " (a BOS token alone is not a prompt)"
        )


def special_token_ids(model) -> dict[int, str]:
    """Token ids that user text must not turn into, with their text: the tokenizer's special tokens
    and the model's mask / EOS / BOS / pad ids."""
    tokenizer = getattr(model, "tokenizer", None)
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", None) or []}
    for tok_id, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(tok_id))
    for name in ("mask_id", "bos_id", "pad_id"):
        if getattr(model, name, None) is not None:
            ids.add(int(getattr(model, name)))
    ids.update(int(i) for i in getattr(model, "eos_ids", None) or [])
    names = {}
    for tok_id in sorted(ids):
        try:
            names[tok_id] = (
                str(tokenizer.convert_ids_to_tokens(tok_id)) if tokenizer is not None else str(tok_id)
            )
        except Exception:  # an id the tokenizer does not know: name it by number
            names[tok_id] = str(tok_id)
    return names


def _token_ids(prompt, label: str) -> list[int]:
    ids = []
    for i, tok in enumerate(prompt):
        if isinstance(tok, bool):
            raise TypeError(f"{label}: token ids must be integers, got {tok!r} at index {i}")
        try:
            ids.append(operator.index(tok))
        except TypeError:
            raise TypeError(
                f"{label}: token ids must be integers, got {tok!r} ({type(tok).__name__}) at index {i}"
            ) from None
    return ids


def encode_prompt(
    model, prompt, chat: bool = False, allow_special: bool = False, *, vocabulary: str = "the vocabulary"
) -> list[int]:
    """One prompt (text or token ids) -> its checked token ids, as ``encode_prompts`` checks a batch;
    a list of prompts or a bare number is a ``TypeError`` (a server's request is one prompt)."""
    if isinstance(prompt, (list, tuple)) and not prompt:
        raise ValueError("empty prompt: the prompt has no tokens; a prompt needs at least one token")
    if isinstance(prompt, (list, tuple)) and prompt and not isinstance(prompt[0], numbers.Integral):
        raise TypeError(
            f"one prompt expected (text or a list of token ids), got a list of {len(prompt)} prompts"
        )
    [ids] = encode_prompts(model, prompt, chat, allow_special, vocabulary=vocabulary)
    return ids


def _as_batch(prompts) -> list:
    if isinstance(prompts, (bytes, bytearray, memoryview)):
        raise TypeError(
            "prompts are bytes; pass text (str: decode the bytes first, e.g. data.decode('utf-8'))"
            " or token ids (a list of int)"
        )
    if hasattr(prompts, "tolist") and not isinstance(prompts, (str, list, tuple)):  # torch / numpy arrays
        prompts = prompts.tolist()
    if isinstance(prompts, str) or (
        isinstance(prompts, Sequence) and prompts and isinstance(prompts[0], numbers.Integral)
    ):
        return [prompts]
    if isinstance(prompts, (dict, set)) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be text, token ids or a list of them, got {type(prompts).__name__}")
    if not prompts:
        raise ValueError("no prompts given")
    return list(prompts)


def _refuse_special_text(model, text: str, label: str, specials: dict) -> None:
    """A ValueError naming the first special token that ``text`` spells."""
    found = [t for t in model.encode(text, add_bos=False) if t in specials]
    if not found:
        return
    kind = "the mask token" if found[0] == getattr(model, "mask_id", None) else "the special token"
    raise ValueError(
        f"{label} contains the text of {kind} {specials[found[0]]!r} (id {found[0]}),"
        " which would be read as that token, not as text;"
        " remove it, or opt in if you mean the token: allow_special=True"
        " (dllm.generate, dllm.speculate, dllm.encode_prompts),"
        " --allow-special on the command line"
    )


def encode_prompts(
    model, prompts, chat: bool = False, allow_special: bool = False, *, vocabulary: str = "the vocabulary"
) -> list[list[int]]:
    """One prompt or a batch (text or token ids) -> checked token id lists, one per prompt.

    ``chat=True`` wraps text in the tokenizer's chat template (its own special tokens are fine).
    ``allow_special=True`` lets prompt text contain special-token text (the mask token's text
    becomes a mask); by default that is a ``ValueError`` naming the token.
    """
    batch = _as_batch(prompts)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or getattr(model, "vocab_size", None)
    specials = None
    encoded = []
    for row, prompt in enumerate(batch):
        label = _label(row, len(batch))
        if isinstance(prompt, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"{label} is bytes; pass text (str: decode the bytes first, e.g. data.decode('utf-8'))"
                " or token ids (a list of int)"
            )
        if isinstance(prompt, str):
            check_text(prompt, label)
            if not allow_special:
                specials = special_token_ids(model) if specials is None else specials
                _refuse_special_text(model, prompt, label, specials)
            ids = model.encode(prompt, chat=chat)
        elif isinstance(prompt, numbers.Number):
            raise TypeError(f"{label} is a single number ({prompt!r}); a token-id prompt is a list of ids")
        elif hasattr(prompt, "tolist") or (
            isinstance(prompt, Sequence) and not isinstance(prompt, (dict, set))
        ):
            ids = _token_ids(prompt.tolist() if hasattr(prompt, "tolist") else prompt, label)
        else:
            raise TypeError(f"{label} must be text (str) or a list of token ids, got {type(prompt).__name__}")
        if not ids:
            raise ValueError(f"empty prompt: {label} has no tokens; a prompt needs at least one token")
        if vocab is not None:
            bad = [t for t in ids if not 0 <= t < vocab]
            if bad:
                raise ValueError(f"{label}: token ids {bad[:5]} are outside {vocabulary} of size {vocab}")
        encoded.append(ids)
    return encoded


def _message_text(message, label: str) -> str:
    """The text of one chat message: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    content = message.get("content")
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ValueError(
                    f"{label}.content[{i}] is a {kind!r} part; only text parts"
                    ' ({"type": "text", "text": ...}) are supported'
                )
            texts.append(part["text"])
        content = "".join(texts)
    if not isinstance(content, str):
        raise TypeError(f"{label}.content must be text, got {type(content).__name__}")
    return content


def encode_chat(
    model, messages, allow_special: bool = False, *, vocabulary: str = "the vocabulary"
) -> list[int]:
    """A conversation (``[{"role": "system" | "user" | "assistant", "content": text}, ...]``) in the
    model's chat template -> its checked token ids. Each message's text follows the rules of text
    prompts (special-token text refused unless ``allow_special``); the template's own special
    tokens are fine. The last message must not be the assistant's (the answer is generated)."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} objects")
    turns = []
    specials = None
    for i, message in enumerate(messages):
        label = f"messages[{i}]"
        if not isinstance(message, dict):
            raise TypeError(
                f"{label} must be an object with 'role' and 'content', got {type(message).__name__}"
            )
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise ValueError(f"{label}.role={role!r} is not supported; the roles are {', '.join(CHAT_ROLES)}")
        text = _message_text(message, label)
        if text or role == "user":  # a system or assistant turn may be empty
            check_text(text, f"{label}.content")
        if not allow_special and text:
            specials = special_token_ids(model) if specials is None else specials
            _refuse_special_text(model, text, f"{label}.content", specials)
        turns.append({"role": role, "content": text})
    if turns[-1]["role"] == "assistant":
        raise ValueError(
            f"messages[{len(turns) - 1}] is the assistant's; the last message must be the user's"
            " (or the system's): the assistant's answer is what is generated"
        )
    if not any(t["role"] == "user" for t in turns):
        raise ValueError("messages has no user message")
    [ids] = encode_prompts(model, [model.encode(turns, chat=True)], vocabulary=vocabulary)
    return ids
