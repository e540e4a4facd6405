"""Evaluation: ParallelBench-style tasks, sweeps of quality vs parallelism, lm-eval, closed forms.

``tasks``        the task generators and checkers, :mod:`dllm.tasks` (a leaf of the core; this name stays)
``spec``         sweep specs (YAML) expanded into run configs with stable ids
``runner``       ``run_sweep``: resumable per-sample JSONL records, data parallel over ranks
``aggregate``    per-config CSV, task-set averages, per-sample oracle, Max-TPS@q, AUC, Pareto
``plots``        figures, each with the CSV it shows (matplotlib, optional)
``report``       ``make_report``: the CSVs, figures and summary of a sweep directory
``oracle``       ideal-marginal fake model for list tasks; ``theory``: its closed-form accuracies
``lm_eval_adapter`` the lm-evaluation-harness model ``dllm`` (optional dependency lm-eval)
``benchmarks``   GSM8K / HumanEval rows in the real schema, offline first; code execution
``mock``         random-weight models with the shipped tokenizer (``random:llada``)
``distributed``  rank / gather / barrier for torchrun and accelerate launches

Command line: ``dllm eval run|report|lm-eval|theory`` (``docs/evaluate.md``).
"""

from dllm import tasks  # noqa: F401  (``from dllm.eval import tasks``: the generators moved to dllm.tasks)
