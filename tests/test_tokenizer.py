"""Tests for the shipped tokenizer (dllm/zoo/tokenizer/) and its builder."""

from __future__ import annotations

import random

import pytest

from dllm import tasks as T
from dllm.tasks import ListTask
from dllm.tasks.names import FIRST_NAMES, LAST_NAMES
from dllm.zoo import tokenizer as ztok


@pytest.fixture(scope="module")
def tok():
    return ztok.load_tokenizer()


def n_tokens(tok, text: str) -> int:
    return len(tok.encode(text, add_special_tokens=False))


def test_loads_with_autotokenizer(tok):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    again = AutoTokenizer.from_pretrained(str(ztok.SHIPPED_DIR))
    assert isinstance(again, PreTrainedTokenizerFast)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) <= 1024


def test_special_tokens(tok):
    assert tok.bos_token == "<|startoftext|>"
    assert tok.eos_token == "<|endoftext|>"
    assert tok.mask_token == "<|mask|>"
    assert tok.pad_token == "<|pad|>"
    ids = [tok.bos_token_id, tok.eos_token_id, tok.mask_token_id, tok.pad_token_id]
    assert all(isinstance(i, int) for i in ids)
    assert len(set(ids)) == 4
    for t in ztok.SPECIAL_TOKENS:
        assert tok.convert_tokens_to_ids(t) in ids
        assert tok.encode(t, add_special_tokens=False) == [tok.convert_tokens_to_ids(t)]


def test_no_bos_or_eos_added(tok):
    ids = tok.encode("copy: Emma Stone\n")
    assert ids == tok.encode("copy: Emma Stone\n", add_special_tokens=False)
    assert tok.bos_token_id not in ids and tok.eos_token_id not in ids


def test_all_names_single_tokens(tok):
    assert ztok.name_tokenization_problems(tok) == []
    for name in FIRST_NAMES + LAST_NAMES:
        assert n_tokens(tok, " " + name) == 1
        assert n_tokens(tok, name) == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "reverse: Emma Stone, Liam Park\nLiam Park, Emma Stone",
        "héllo wörld — ünïcödé",
        "日本語のテキスト",
        "emoji 🤖👩‍👩‍👧 ok",
        "tabs\tand\r\nCRLF  \n\n  ",
        "math: 959-820\n139",
        "<|mask|><|mask|> a <|endoftext|>",
        "\x00\x01 control \u200b zero-width",
        "  leading and trailing spaces   ",
        "it's we'll they're 1234567890",
    ],
)
def test_round_trip(tok, text):
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_round_trip_random_unicode(tok):
    rng = random.Random(0)
    for _ in range(200):
        chars = []
        for _ in range(rng.randint(0, 30)):
            cp = rng.choice(
                [
                    rng.randint(32, 126),
                    rng.randint(0, 0x2FFF),
                    rng.randint(0x1F300, 0x1FAFF),
                    rng.choice([9, 10, 13, 32]),
                ]
            )
            if 0xD800 <= cp <= 0xDFFF:
                continue
            chars.append(chr(cp))
        text = "".join(chars)
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_digits_are_single_tokens(tok):
    assert n_tokens(tok, "123456") == 6
    assert n_tokens(tok, "1 2 3 4, 3 4 1 2, 2 1 4 3, 4 3 2 1") == 19


def _worst_case_target_tokens(tok, task) -> int:
    """An upper bound on the target length in tokens (pieces tokenise independently)."""
    comma = n_tokens(tok, ",")
    if isinstance(task, ListTask):
        n_out = max(task.lengths) + (1 if task.op.startswith("insert") else 0)
        n_out -= 1 if task.op.startswith("remove") else 0
        per_item = max(max(n_tokens(tok, v), n_tokens(tok, " " + v)) for v in task.vocab)
        return n_out * per_item + (n_out - 1) * comma
    if task.name == "cumsum":
        n = max(task.lengths)
        return n_tokens(tok, ", ".join(str(9 * (i + 1)) for i in range(n)))
    if task.name == "math_op":
        return max(n_tokens(tok, s) for s in ("998001", "-999", "1998"))
    if task.name in ("latin_square", "sudoku"):
        from dllm.tasks.names import LATIN_SYMBOLS

        per_cell = max(n_tokens(tok, " " + s) for s in LATIN_SYMBOLS + tuple("1234"))
        return 16 * per_cell + 3 * comma
    raise AssertionError(task.name)


@pytest.mark.parametrize("name", T.names())
def test_targets_fit_in_half_the_budget(tok, name):
    task = T.get(name)
    worst = _worst_case_target_tokens(tok, task)
    assert 2 * worst <= task.max_new_tokens < 2 * worst + 8 + 8  # >= 2x, and not wildly more
    exs = task.examples("train", 120, seed=11) + task.examples("eval", 60, seed=11)
    longest = max(n_tokens(tok, e.target) for e in exs)
    assert longest <= worst
    assert 2 * longest <= task.max_new_tokens


def test_rebuild_is_identical(tmp_path):
    out = ztok.build_tokenizer(tmp_path / "tok")
    assert (out / "tokenizer.json").read_bytes() == (ztok.SHIPPED_DIR / "tokenizer.json").read_bytes()
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        assert (out / f).read_text() == (ztok.SHIPPED_DIR / f).read_text()
