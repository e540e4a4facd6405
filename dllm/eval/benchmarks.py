"""Standard benchmarks (GSM8K, HumanEval) for the lm-eval tasks: rows in the real schema, offline first.

Rows of benchmark ``bench`` and ``split`` come from the first of:

1. ``data_files`` (a path or a ``{split: path}`` dict; JSONL, or Parquet with pyarrow);
2. ``$DLLM_EVAL_DATA_DIR/<bench>/<split>.jsonl``;
3. the Hugging Face hub through ``datasets.load_dataset`` when asked for (``source="hub"``, or the
   environment variable ``DLLM_EVAL_SOURCE=hub``) — needs the network or a filled cache;
4. the tiny fixtures shipped in ``dllm/eval/lm_eval_tasks/fixtures/<bench>/<split>.jsonl``:
   synthetic problems written for this project in the real schema (their scores mean nothing;
   a warning says so).

Every row is checked against the schema (``SCHEMAS``). ``run_program`` executes generated code
for pass@1 in a subprocess with a timeout; lm-eval only lets it run with
``--confirm_run_unsafe_code``, since the code is untrusted.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("dllm.eval")

FIXTURES = Path(__file__).parent / "lm_eval_tasks" / "fixtures"
SCHEMAS = {
    "gsm8k": {"question": str, "answer": str},
    "humaneval": {"task_id": str, "prompt": str, "canonical_solution": str, "test": str, "entry_point": str},
}
HUB = {"gsm8k": ("openai/gsm8k", "main"), "humaneval": ("openai/openai_humaneval", None)}


def validate(bench: str, rows: list[dict], source: str) -> list[dict]:
    schema = SCHEMAS[bench]
    for i, row in enumerate(rows):
        for field, kind in schema.items():
            if not isinstance(row.get(field), kind):
                raise ValueError(
                    f"{source} row {i}: field {field!r} must be {kind.__name__}, got {row.get(field)!r}"
                )
        if bench == "gsm8k" and "####" not in row["answer"]:
            raise ValueError(f"{source} row {i}: a GSM8K answer ends with '#### <number>'")
    return rows


def _read(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    from dllm.eval.files import read_text

    rows = []
    for number, line in enumerate(read_text(path, "benchmark data file").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not a JSON line ({exc.msg}); fix or delete that line") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: a row must be a JSON object, found a JSON {type(row).__name__}")
        rows.append(row)
    return rows


def load_rows(bench: str, split: str, data_files=None, source: str | None = None) -> tuple[list[dict], str]:
    """``(rows, data_source)`` with data_source one of ``local``, ``hub``, ``fixture``."""
    if bench not in SCHEMAS:
        raise ValueError(f"unknown benchmark {bench!r}; known: {', '.join(SCHEMAS)}")
    if data_files:
        files = data_files if isinstance(data_files, dict) else {split: data_files}
        if split in files:
            path = Path(files[split])
            return validate(bench, _read(path), str(path)), "local"
    local = Path(os.environ.get("DLLM_EVAL_DATA_DIR", "/nonexistent")) / bench / f"{split}.jsonl"
    if local.exists():
        return validate(bench, _read(local), str(local)), "local"
    if (source or os.environ.get("DLLM_EVAL_SOURCE", "")).lower() == "hub":
        import datasets

        hub_id, config = HUB[bench]
        rows = datasets.load_dataset(hub_id, config, split=split).to_list()
        return validate(bench, rows, hub_id), "hub"
    fixture = FIXTURES / bench / f"{split}.jsonl"
    if not fixture.exists():
        raise FileNotFoundError(f"no {bench} {split} data: set DLLM_EVAL_DATA_DIR or source=hub")
    log.warning(
        "%s/%s: using the %d-row synthetic fixture (scores are not comparable to the real benchmark);"
        " set DLLM_EVAL_DATA_DIR or source=hub for real data",
        bench,
        split,
        len(_read(fixture)),
    )
    return validate(bench, _read(fixture), str(fixture)), "fixture"


def dataset_dict(bench: str, splits: tuple[str, ...], **kwargs):
    """A ``datasets.DatasetDict`` of the splits (what lm-eval's ``custom_dataset`` must return)."""
    import datasets

    data_files = kwargs.get("data_files")
    source = kwargs.get("source")
    out = {}
    for split in splits:
        rows, origin = load_rows(bench, split, data_files, source)
        out[split] = datasets.Dataset.from_list([{**row, "data_source": origin} for row in rows])
    return datasets.DatasetDict(out)


def run_program(source: str, timeout: float = 10.0) -> bool:
    """True iff ``source`` runs to completion (exit status 0) within ``timeout`` seconds.

    Runs in a fresh interpreter (``-I``: no site-packages from the user, no env vars), in a
    temporary working directory. This is isolation from the harness, not a security sandbox.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "program.py"
        path.write_text(source)
        try:
            proc = subprocess.run(
                [sys.executable, "-I", str(path)],
                cwd=tmp,
                capture_output=True,
                timeout=timeout,
                env={"PATH": os.environ.get("PATH", "")},
            )
        except subprocess.TimeoutExpired:
            return False
    return proc.returncode == 0
