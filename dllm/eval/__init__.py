"""Evaluation: self-contained ParallelBench-style tasks (``dllm.eval.tasks``), metrics and runners."""
