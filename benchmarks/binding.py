"""Name binding of the shipped tiny models: is each last name tied to its own first name?

    python benchmarks/binding.py [--n 40] [--models tiny-llada tiny-dream tiny-ar] [--tasks copy shuffle ...]

The Waiting Line answers are lists of ``First Last`` names. Copy, reverse and the ``*_index`` ops
can be answered by position (item k of the answer is item j of the prompt); shuffle and the
``*_random`` ops cannot: once a slot's first name is chosen, its last name must be *looked up* in
the prompt by content. This probe measures that lookup directly, without decoding: the canvas holds
the reference answer with every last name replaced by the mask token (``last masked``: the first
names are given), or every first name (``first masked``), and one forward scores how often the
argmax at a masked position is the right name. ``tiny-ar`` is teacher-forced: its prediction of
each last name from the prefix that ends with the same slot's first name (``first masked`` does
not apply to a left-to-right model).

Chance, for a model that picks one of the list's names blindly, is ``mean(1/n)`` over list sizes
(0.20 for 3-8 names equally often). A model that binds names scores near 1.0 on every task; a model that only
copies by position scores ~1.0 on copy / reverse and near chance on shuffle.

Held-out (eval split) examples; answers tokenised as training and decoding see them
(``dllm.zoo.train.encode_batch``); each name is one token of the shipped tokenizer.
"""

from __future__ import annotations

import argparse
import sys

import torch

PROBE_TASKS = ("copy", "reverse", "sort", "shuffle", "insert_random", "remove_random", "replace_random")


def name_columns(target_ids: list[int], n_items: int) -> tuple[list[int], list[int]]:
    """Offsets of the first-name and last-name tokens in an answer ``First Last, First Last, ...``.

    Every name is one token and every separator ``","`` one token, so item ``i`` is tokens
    ``3i`` (first name), ``3i + 1`` (last name); anything else is an error, not a guess."""
    if len(target_ids) != 3 * n_items - 1:
        raise ValueError(
            f"answer of {n_items} names has {len(target_ids)} tokens, expected {3 * n_items - 1} "
            "(every name one token, one separator between items)"
        )
    return [3 * i for i in range(n_items)], [3 * i + 1 for i in range(n_items)]


def answer_items(example) -> list[str]:
    from dllm.tasks import parse_list

    return parse_list(example.target)


def chance(examples) -> float:
    return sum(1.0 / len(answer_items(e)) for e in examples) / len(examples)


@torch.no_grad()
def probe_diffusion(model, tokenizer, examples) -> dict[str, float]:
    from dllm.zoo import train as zoo

    prompts, targets = zoo.encode_batch(tokenizer, examples)
    width = max(len(p) for p in prompts)
    canvas = [len(t) + 1 for t in targets]
    tokens, positions, valid, _ = zoo.layout_diffusion(prompts, targets, canvas)
    out = {}
    for which in ("first", "last"):
        masked = torch.zeros_like(valid)
        for row, (target, example) in enumerate(zip(targets, examples)):
            firsts, lasts = name_columns(target, len(answer_items(example)))
            for col in firsts if which == "first" else lasts:
                masked[row, width + col] = True
        noisy = tokens.masked_fill(masked, model.mask_id)
        logits = model.net(noisy, positions, valid)  # column j predicts token j (Dream's shift inside)
        out[f"{which} masked"] = float((logits.argmax(-1)[masked] == tokens[masked]).float().mean())
    return out


@torch.no_grad()
def probe_ar(model, tokenizer, examples) -> dict[str, float]:
    from dllm.zoo import train as zoo

    prompts, targets = zoo.encode_batch(tokenizer, examples)
    ids, attn, _ = zoo.layout_ar(prompts, targets)
    logits = model.net(input_ids=ids, attention_mask=attn).logits
    right = total = 0
    for row, (prompt, target, example) in enumerate(zip(prompts, targets, examples)):
        _, lasts = name_columns(target, len(answer_items(example)))
        for col in lasts:
            at = len(prompt) + col  # logits at at - 1 predict the token at ``at``
            right += int(logits[row, at - 1].argmax() == ids[row, at])
            total += 1
    return {"last masked": right / total}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=40, help="held-out examples per task")
    parser.add_argument("--models", nargs="+", default=["tiny-llada", "tiny-dream", "tiny-ar"])
    parser.add_argument("--tasks", nargs="+", default=list(PROBE_TASKS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be >= 1")

    import dllm
    from dllm.eval import tasks as task_lib
    from dllm.zoo.train import load_tokenizer

    probed = {}
    for name in args.tasks:
        try:
            task = probed[name] = task_lib.get(name)
        except ValueError as error:
            parser.error(f"--tasks: {error}")
        if task.family != "waiting_line":
            parser.error(
                f"--tasks: {name!r} is not a Waiting Line task (names First Last); choose from {PROBE_TASKS}"
            )
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer()
    print("| model | task | last names masked (first given) | first names masked (last given) | chance |")
    print("|---|---|---:|---:|---:|")
    for model_name in args.models:
        model = dllm.load(model_name)
        is_ar = isinstance(model, dllm.models.CausalLM)
        for name, task in probed.items():
            examples = task.examples("eval", args.n, seed=0)
            scores = (probe_ar if is_ar else probe_diffusion)(model, tokenizer, examples)
            first = scores.get("first masked")
            print(
                f"| {model_name} | {name} | {scores['last masked']:.2f} | "
                f"{'—' if first is None else f'{first:.2f}'} | {chance(examples):.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
