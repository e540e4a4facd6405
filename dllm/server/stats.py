"""``GET /metrics``: the server's counters in Prometheus' text format (``prometheus-client``).

Counts follow ``dllm.metrics``' definitions (NFE, tokens per forward, tokens per verifier
forward, acceptance rate): each finished row's result is observed once. Every server has its own
registry, so several servers in one process (tests, Ray replicas) never share counters.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time

RATE_WINDOW = 60.0  # seconds over which dllm_tokens_per_second is averaged


class ServerMetrics:
    def __init__(self, service):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # no *_created series: a counter's start time is not a count

        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "dllm_http_requests",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=registry,
        )
        Gauge("dllm_queue_depth", "requests waiting for a row", registry=registry).set_function(
            lambda: service.counts()[0]
        )
        Gauge("dllm_running_rows", "rows decoding in a running batch", registry=registry).set_function(
            lambda: service.counts()[1]
        )
        Gauge(
            "dllm_running_batches", "running batches (Batchers) of distinct settings", registry=registry
        ).set_function(lambda: len(service.pool.batchers()))
        self.rows = Counter(
            "dllm_rows", "rows that left the engine, by outcome", ["outcome"], registry=registry
        )
        self.tokens = Counter("dllm_generated_tokens", "generated tokens (before EOS)", registry=registry)
        Gauge(
            "dllm_tokens_per_second",
            f"generated tokens per second over the last {RATE_WINDOW:.0f} s",
            registry=registry,
        ).set_function(self.tokens_per_second)
        self.nfe = Histogram(
            "dllm_nfe",
            "model forwards per row (verifier forwards for speculative decoding)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=registry,
        )
        self.tpf = Histogram(
            "dllm_tokens_per_forward",
            "generated tokens / NFE per row (tokens per verifier forward for speculative decoding)",
            buckets=(0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 32),
            registry=registry,
        )
        self.acceptance = Histogram(
            "dllm_acceptance_rate",
            "speculative decoding: accepted / drafted tokens per row",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
            registry=registry,
        )
        seconds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
        self.decode_seconds = Histogram(
            "dllm_decode_seconds", "a row's decoding time (join to leave)", buckets=seconds, registry=registry
        )
        self.queue_seconds = Histogram(
            "dllm_queue_seconds",
            "a row's wait for a place in a running batch",
            buckets=seconds,
            registry=registry,
        )
        self.first_chunk = Histogram(
            "dllm_time_to_first_chunk_seconds",
            "streaming: from the request to its first text chunk",
            buckets=seconds,
            registry=registry,
        )
        self._recent: collections.deque = collections.deque()
        self._lock = threading.Lock()
        service.on_finished.append(self.observe)

    def observe(self, request) -> None:
        """A request left the engine: its outcome and, when done, its result's counts."""
        try:
            result = request.result(timeout=0)
        except concurrent.futures.CancelledError:
            self.rows.labels(outcome="cancelled").inc()
            return
        except Exception:  # noqa: BLE001 — its error is answered to its client
            self.rows.labels(outcome="failed").inc()
            return
        self.rows.labels(outcome="done").inc()
        self.tokens.inc(result.gen_tokens)
        with self._lock:
            self._recent.append((time.monotonic(), result.gen_tokens))
        speculative = hasattr(result, "verifier_forwards")
        self.nfe.observe(result.verifier_forwards if speculative else result.nfe)
        self.tpf.observe(result.tokens_per_verifier_forward if speculative else result.tokens_per_forward)
        if speculative and result.drafted:
            self.acceptance.observe(result.acceptance_rate)
        self.decode_seconds.observe(result.seconds)
        self.queue_seconds.observe(result.queue_seconds)

    def tokens_per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0][0] < now - RATE_WINDOW:
                self._recent.popleft()
            return sum(tokens for _, tokens in self._recent) / RATE_WINDOW

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
