"""The ``ar`` drafter's default draft length is described as what it is (issue 26): transformers' former
heuristic schedule (+2/−1 from 5), not transformers' current assisted-generation default (20 draft
tokens, adaptive confidence threshold 0.4), which is dllm's ``confidence`` controller (issue 29), not the
``ar`` drafter's default."""

import re
from pathlib import Path

import dllm.drafters
from dllm.drafters import ar
from dllm.drafters.length import HeuristicLength

ROOT = Path(__file__).resolve().parents[1]
FORMER = "former heuristic schedule (+2/−1 from 5)"
CURRENT = "20 draft tokens with an adaptive confidence threshold of 0.4"


def test_the_ar_default_is_the_former_heuristic_schedule():
    default = dllm.drafters.get("ar").default_length()
    assert isinstance(default, HeuristicLength)
    assert (default.start_k, default.increase, default.decrease) == (5, 2, 1)  # "+2/−1 from 5"


def test_transformers_current_default_is_what_the_docs_say():
    from transformers import GenerationConfig

    defaults = getattr(GenerationConfig, "_get_default_generation_params", None)
    values = defaults() if defaults else vars(GenerationConfig())
    assert values["num_assistant_tokens"] == 20
    assert values["assistant_confidence_threshold"] == 0.4
    assert values["num_assistant_tokens_schedule"] == "constant"


def test_readme_and_docstring_say_it_plainly():
    readme = (ROOT / "README.md").read_text()
    doc = " ".join(ar.__doc__.split())
    for text in (" ".join(readme.split()), doc):
        assert FORMER in text and CURRENT in text and "issue 29" in text
    assert "Hugging Face's +2/−1" not in readme and "HF's heuristic length schedule is" not in doc
    # every table row or sentence about the AR drafter's heuristic k says "former"
    for line in readme.splitlines():
        if re.search(r"heuristic k", line):
            assert "former" in line, line
