"""Prompt checks (dllm/prompts.py): every bad prompt a TypeError / ValueError naming the problem and the
row."""

import numpy as np
import pytest
import torch
from _models import random_model

import dllm
from dllm.prompts import encode_prompts

SETTINGS = dict(gen_length=8, block_length=8)


@pytest.fixture(scope="module")
def model():
    return dllm.load("tiny-llada")


@pytest.mark.parametrize(
    "prompts,error,match",
    [
        ("", ValueError, r"empty prompt: the prompt is empty.*BOS token alone is not a prompt"),
        ("   \n", ValueError, r"empty prompt: the prompt is only whitespace"),
        (["copy: Ava Cole\n", ""], ValueError, r"empty prompt: prompt 1 \(of 2\) is empty"),
        (["copy: Ava Cole\n", [1, 5], []], ValueError, r"empty prompt: prompt 2 \(of 3\) has no tokens"),
        (b"copy: Ava\n", TypeError, r"prompts are bytes; pass text \(str: decode the bytes first"),
        (["copy: Ava\n", b"copy: Ava\n"], TypeError, r"prompt 1 \(of 2\) is bytes"),
        ([bytearray(b"x")], TypeError, r"the prompt is bytes"),
        (
            "copy: Ava\ud800 Cole",
            ValueError,
            r"the prompt is not valid text: lone surrogate '\\ud800' at character 9",
        ),
        (
            ["ok", "copy: \udcff\udcfe"],
            ValueError,
            r"prompt 1 \(of 2\) is not valid text: undecodable byte 0xff \(input that is not UTF-8",
        ),
        (
            "copy: Ava <|mask|> Cole\n",
            ValueError,
            r"the prompt contains the text of the mask token '<\|mask\|>' \(id 3\)",
        ),
        (
            ["fine", "copy: <|endoftext|>"],
            ValueError,
            r"prompt 1 \(of 2\) contains the text of the special token '<\|endoftext\|>'.*allow_special=True",
        ),
        ("x <|startoftext|>", ValueError, r"special token '<\|startoftext\|>'"),
        ("x <|pad|>", ValueError, r"special token '<\|pad\|>'"),
        ([[1, 2.5]], TypeError, r"token ids must be integers, got 2.5 \(float\) at index 1"),
        ([True, 5], TypeError, r"token ids must be integers, got True at index 0"),
        (
            [[1, 5], None],
            TypeError,
            r"prompt 1 \(of 2\) must be text \(str\) or a list of token ids, got NoneType",
        ),
        (None, TypeError, r"prompts must be text, token ids or a list of them, got NoneType"),
        ({"text": "x"}, TypeError, r"got dict"),
        (7, TypeError, r"got int"),
        ([[1, 5], 7], TypeError, r"prompt 1 \(of 2\) is a single number \(7\)"),
        ([], ValueError, r"no prompts given"),
        ([[1, 100000]], ValueError, r"token ids \[100000\] are outside the vocabulary of size \d+"),
        ([[-1, 4]], ValueError, r"token ids \[-1\] are outside the vocabulary"),
    ],
)
def test_bad_prompts_are_refused_by_encode_and_generate(model, prompts, error, match):
    with pytest.raises(error, match=match):
        encode_prompts(model, prompts)
    with pytest.raises(error, match=match):
        dllm.generate(model, prompts, **SETTINGS)


def test_special_text_needs_the_opt_in(model):
    text = "copy: Ava <|mask|> Cole\n"
    [ids] = encode_prompts(model, text, allow_special=True)
    assert model.mask_id in ids and ids[0] == model.bos_id
    [result] = dllm.generate(model, [ids], **SETTINGS)  # the caller's ids are taken as given
    assert len(result.canvas) == 8
    assert dllm.encode_prompts is encode_prompts


@pytest.mark.parametrize(
    "prompts,expected",
    [
        ([1, 5, 6], [[1, 5, 6]]),
        ((1, 5, 6), [[1, 5, 6]]),
        ([[1, 5], (1, 6, 7)], [[1, 5], [1, 6, 7]]),
        (torch.tensor([1, 5, 6]), [[1, 5, 6]]),
        (torch.tensor([[1, 5], [1, 6]]), [[1, 5], [1, 6]]),
        ([torch.tensor([1, 5])], [[1, 5]]),
        (np.array([1, 5, 6]), [[1, 5, 6]]),
        (
            [np.int64(1), np.int64(3)],
            [[1, 3]],
        ),  # special ids (3 = mask) in token-id prompts are the caller's choice
    ],
)
def test_token_id_prompts_keep_working(model, prompts, expected):
    assert encode_prompts(model, prompts) == expected


def test_text_prompts_and_a_batch_encode(model):
    one, two = encode_prompts(model, ["copy: Ava Cole\n", "  reverse: Max Hill  "])
    assert one[0] == two[0] == model.bos_id and len(one) > 2
    assert encode_prompts(model, "copy: Ava Cole\n") == [one]
    assert encode_prompts(model, "copy: Ava Cole\n", allow_special=True) == [one]


def test_models_without_tokenizer_take_ids_only():
    model = random_model("llada")
    assert encode_prompts(model, [[1, 63]]) == [[1, 63]]
    with pytest.raises(ValueError, match="loaded without a tokenizer"):
        encode_prompts(model, "text")


def test_speculate_follows_the_same_rules():
    verifier = dllm.load("tiny-ar")
    with pytest.raises(ValueError, match=r"the prompt contains the text of the special token '<\|mask\|>'"):
        dllm.speculate(verifier, "copy: Ava <|mask|>\n", max_new_tokens=2)
    with pytest.raises(TypeError, match=r"prompts are bytes"):
        dllm.speculate(verifier, b"copy: Ava\n", max_new_tokens=2)
    with pytest.raises(ValueError, match=r"empty prompt: prompt 1 \(of 2\) is only whitespace"):
        dllm.speculate(verifier, ["copy: Ava\n", "  "], max_new_tokens=2)
    with pytest.raises(
        ValueError, match=r"token ids \[100000\] are outside the verifier's vocabulary of size"
    ):
        dllm.speculate(verifier, [[1, 100000]], max_new_tokens=2)
    [result] = dllm.speculate(verifier, "copy: Ava <|mask|>\n", max_new_tokens=2, allow_special=True)
    assert result.gen_tokens <= 2


def test_generate_opts_in_to_special_token_text(model):
    with pytest.raises(ValueError, match="mask token"):
        dllm.generate(model, "copy: <|mask|>\n", gen_length=8, block_length=8)
    [result] = dllm.generate(model, "copy: <|mask|>\n", gen_length=8, block_length=8, allow_special=True)
    assert model.mask_id not in result.canvas


def test_a_conversation_in_the_chat_template(model):
    from dllm.prompts import encode_chat

    model.tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    try:
        messages = [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "copy: "}, {"type": "text", "text": "Ava"}],
            },
        ]
        assert encode_chat(model, messages) == model.encode("<system>Be brief.<user>copy: Ava<assistant>")
        one_turn = [{"role": "user", "content": "copy: Ava"}]
        assert encode_chat(model, one_turn) == encode_prompts(model, "copy: Ava", chat=True)[0]
        for messages, error, match in [
            ([], ValueError, "non-empty list"),
            ([{"role": "tool", "content": "x"}], ValueError, r"messages\[0\]\.role='tool' is not supported"),
            ([{"role": "user", "content": "  "}], ValueError, r"messages\[0\]\.content is only whitespace"),
            ([{"role": "user", "content": 5}], TypeError, r"messages\[0\]\.content must be text"),
            (
                [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
                ValueError,
                "only text parts",
            ),
            ([{"role": "user", "content": "a <|mask|>"}], ValueError, "mask token"),
            ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], ValueError, "last"),
            ([{"role": "system", "content": "x"}], ValueError, "no user message"),
            (["hello"], TypeError, "must be an object"),
        ]:
            with pytest.raises(error, match=match):
                encode_chat(model, messages)
    finally:
        model.tokenizer.chat_template = None
    with pytest.raises(ValueError, match="has no chat template"):
        encode_chat(model, [{"role": "user", "content": "x"}])


def test_one_empty_token_list_is_an_empty_prompt(model):
    from dllm.prompts import encode_prompt

    with pytest.raises(ValueError, match="empty prompt: the prompt has no tokens"):
        encode_prompt(model, [])
