"""HTML for the demo: the live canvas, the unmasking-order heat map, counters, speculative rounds,
and the summary table. Pure functions of plain data (no Gradio, no model), so they are unit-tested.

Colours: a committed token carries both colourings as CSS variables (``--cs``/``--ts`` by step,
``--cc``/``--tc`` by confidence); the inline style applies the one asked for, and the page's
toggle switches every canvas at once by a class on ``<body>`` (see ``CSS``) — live, no re-run.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

# viridis, early (dark purple) -> late (yellow)
_STEP_STOPS = [
    "#440154",
    "#482878",
    "#3e4989",
    "#31688e",
    "#26828e",
    "#1f9e89",
    "#35b779",
    "#6ece58",
    "#b5de2b",
    "#fde725",
]
_CONF_STOPS = ["#d73027", "#f46d43", "#fdae61", "#fee08b", "#d9ef8b", "#a6d96a", "#66bd63", "#1a9850"]


def _hex(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def _interpolate(stops: list[str], t: float) -> str:
    t = min(1.0, max(0.0, t))
    x = t * (len(stops) - 1)
    i = min(int(x), len(stops) - 2)
    a, b = _hex(stops[i]), _hex(stops[i + 1])
    f = x - i
    return "#" + "".join(f"{round(u + (v - u) * f):02x}" for u, v in zip(a, b))


def text_on(background: str) -> str:
    """Black or white text, whichever reads better on ``background``."""
    r, g, b = _hex(background)
    return "#111111" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def step_colour(step: int, max_step: int) -> str:
    """Colour of a token committed at 1-based ``step`` of ``max_step`` (first = dark purple, last =
    yellow)."""
    if max_step <= 1:
        return _STEP_STOPS[0]
    return _interpolate(_STEP_STOPS, (step - 1) / (max_step - 1))


def confidence_colour(conf: float) -> str:
    """Red (0) -> yellow (0.5) -> green (1)."""
    return _interpolate(_CONF_STOPS, conf)


def token_text(text: str) -> str:
    """How a token is written in a box: newlines as ⏎, a whitespace-only token as ␣."""
    text = text.replace("\n", "⏎").replace("\t", "⇥")
    return text if text.strip() else "␣" * max(1, len(text))


@dataclass
class Canvas:
    """The generated region of one row, position by position (offset 0 = first generated position)."""

    tokens: list[str]  # display text per position (ignored for masks)
    kinds: list[str]  # "mask" | "token" | "eos" | "fill" (set without a step: EOS fill)
    steps: list[int | None]  # 1-based step that committed the position
    confs: list[float | None]  # its confidence when committed
    block: tuple[int, int] | None = None  # current block [start, end), None when done
    max_step: int = 1  # top of the step colour scale
    extra: dict = field(default_factory=dict)

    @property
    def masked(self) -> int:
        return sum(k == "mask" for k in self.kinds)


def _token_span(canvas: Canvas, i: int, colour_by: str) -> str:
    kind, step, conf = canvas.kinds[i], canvas.steps[i], canvas.confs[i]
    if kind == "mask":
        return f'<span class="dl-tok dl-mask" title="position {i}: masked">M</span>'
    text = "eos" if kind in ("eos", "fill") else token_text(canvas.tokens[i])
    classes = ["dl-tok"] + (["dl-eos"] if kind in ("eos", "fill") else [])
    title = f"position {i}: {canvas.tokens[i]!r}"
    style = ""
    if step is not None:
        cs = step_colour(step, canvas.max_step)
        cc = confidence_colour(conf if conf is not None else 1.0)
        bg, fg = (cc, text_on(cc)) if colour_by == "confidence" else (cs, text_on(cs))
        style = (
            f' style="--cs:{cs};--ts:{text_on(cs)};--cc:{cc};--tc:{text_on(cc)};background:{bg};color:{fg}"'
            f' data-step="{step}"'
        )
        classes.append("dl-done")
        title += f" · step {step}" + (f" · confidence {conf:.3f}" if conf is not None else "")
    else:
        classes.append("dl-fill")
        title += " · filled when the row stopped"
    return f'<span class="{" ".join(classes)}" title="{html.escape(title)}"{style}>{html.escape(text)}</span>'


def canvas_html(canvas: Canvas, colour_by: str = "step") -> str:
    """The canvas as HTML: mask boxes, tokens coloured by step (or confidence), the current block outlined."""
    if colour_by not in ("step", "confidence"):
        raise ValueError(f"colour_by={colour_by!r} is not one of ('step', 'confidence')")
    parts = []
    start, end = canvas.block if canvas.block is not None else (-1, -1)
    for i in range(len(canvas.kinds)):
        if i == start:
            parts.append(f'<span class="dl-block" title="current block: positions {start}..{end - 1}">')
        parts.append(_token_span(canvas, i, colour_by))
        if i == end - 1 and start >= 0:
            parts.append("</span>")
    if start >= 0 and end > len(canvas.kinds):
        parts.append("</span>")
    return (
        f'<div class="dl-canvas" data-colour="{colour_by}" data-masked="{canvas.masked}"'
        f' data-positions="{len(canvas.kinds)}">{"".join(parts)}</div>'
    )


def legend_html() -> str:
    """Both colour scales; the page shows the one selected."""
    steps = "".join(f'<span style="background:{step_colour(s, 10)}"></span>' for s in range(1, 11))
    confs = "".join(f'<span style="background:{confidence_colour(c / 9)}"></span>' for c in range(10))
    return (
        f'<div class="dl-legend"><span class="dl-legend-step">first step <i>{steps}</i> last step</span>'
        f'<span class="dl-legend-conf">confidence 0 <i>{confs}</i> 1</span>'
        f'<span><span class="dl-tok dl-mask">M</span> masked</span>'
        f'<span><span class="dl-tok dl-eos">eos</span> end of text</span>'
        f'<span><span class="dl-block dl-block-key">&nbsp;&nbsp;</span> current block</span>'
        f"<span>hover a token for its step and confidence</span></div>"
    )


def heatmap_html(canvas: Canvas, colour_by: str = "step") -> str:
    """Unmasking order: one row per step, one column per position, a cell where that step committed it."""
    n, steps = len(canvas.kinds), max([s for s in canvas.steps if s is not None], default=0)
    if not n or not steps:
        return '<div class="dl-heat-empty">no steps recorded</div>'
    height = max(3, min(12, 240 // steps))
    cells = []
    for i, (step, conf) in enumerate(zip(canvas.steps, canvas.confs)):
        if step is None:
            continue
        cs = step_colour(step, canvas.max_step)
        cc = confidence_colour(conf if conf is not None else 1.0)
        bg = cc if colour_by == "confidence" else cs
        tip = f"position {i} {canvas.tokens[i]!r} · step {step}" + (
            f" · conf {conf:.3f}" if conf is not None else ""
        )
        cells.append(
            f'<div class="dl-done" style="grid-row:{step};grid-column:{i + 1};--cs:{cs};--cc:{cc};'
            f'background:{bg}" title="{html.escape(tip)}"></div>'
        )
    return (
        '<div class="dl-heat">'
        f'<div class="dl-heat-axis">step ↓ {steps} steps · position → {n} positions</div>'
        f'<div class="dl-heat-grid" style="grid-template-columns:repeat({n},1fr);'
        f'grid-template-rows:repeat({steps},{height}px)" data-steps="{steps}" data-positions="{n}">'
        f"{''.join(cells)}</div></div>"
    )


COUNTERS = (
    ("step", "step", "{:d}"),
    ("nfe", "NFE", "{:d}"),
    ("tpf", "tokens/forward", "{:.2f}"),
    ("tps", "tokens/s", "{:.1f}"),
    ("seconds", "seconds", "{:.2f}"),
    ("tokens", "tokens", "{:d}"),
    ("rounds", "rounds", "{:d}"),
    ("tau", "τ", "{:.2f}"),
    ("tpvf", "tokens/verifier forward", "{:.2f}"),
)


def counters_html(status: str, counters: dict | None = None, message: str = "") -> str:
    """Status badge and the live counters (``data-*`` attributes carry the exact values)."""
    counters = counters or {}
    cells, attrs = [], []
    for key, label, fmt in COUNTERS:
        if key in counters and counters[key] is not None:
            value = counters[key]
            attrs.append(f'data-{key}="{value}"')
            cells.append(
                f'<span class="dl-counter"><b data-counter="{key}">{fmt.format(value)}</b> {label}</span>'
            )
    note = f'<div class="dl-message">{html.escape(message)}</div>' if message else ""
    return (
        f'<div class="dl-counters dl-status-{status}" data-status="{status}" {" ".join(attrs)}>'
        f'<span class="dl-badge">{html.escape(status)}</span>{"".join(cells)}{note}</div>'
    )


def error_html(message: str, title: str = "error") -> str:
    return counters_html("error", message=f"{title}: {message}")


# ---- speculative rounds ---------------------------------------------------------------------


def _verifier_span(text: str | None, accepted: int, drafted: int) -> str:
    """The token the verifier added after ``accepted`` of ``drafted`` draft tokens (None: cut)."""
    if text is None:
        return '<span class="dl-tok dl-end" title="the answer ended (stop token or budget)">■</span>'
    if accepted < drafted:
        return f'<span class="dl-tok dl-corr" title="verifier correction">→{text}</span>'
    if drafted:
        return f'<span class="dl-tok dl-bonus" title="bonus token">+{text}<sup>bonus</sup></span>'
    return f'<span class="dl-tok dl-own" title="verifier token (no draft)">{text}</span>'


def _round_div(number: int, head: str, spans: list[str], accepted: int, drafted: int) -> str:
    return (
        f'<div class="dl-round" data-accepted="{accepted}" data-drafted="{drafted}">'
        f'<span class="dl-round-head">{number:>3} · {head}</span>{"".join(spans)}</div>'
    )


_ROUNDS_LEGEND = (
    '<div class="dl-legend"><span class="dl-tok dl-acc">accepted</span><span class="dl-tok dl-rej">'
    'rejected</span><span class="dl-tok dl-rest">rest of draft</span><span class="dl-tok dl-corr">→'
    'correction</span><span class="dl-tok dl-bonus">+bonus</span><span class="dl-tok dl-own">verifier'
    '</span><span class="dl-tok dl-end">■</span> answer ended</div>'
)


def rounds_html(trace, decode) -> str:
    """Round by round: accepted draft tokens green, the rejected one red (the rest struck through),
    the verifier's correction (→) or bonus (+, marked) token, ■ where the answer ended."""
    rows = []
    for number, record in enumerate(trace, 1):
        n, draft = record.accepted, list(record.draft)
        spans = []
        for i, tok in enumerate(draft):
            cls = "dl-acc" if i < n else ("dl-rej" if i == n else "dl-rest")
            spans.append(f'<span class="dl-tok {cls}">{html.escape(token_text(decode([tok])))}</span>')
        token = None if record.token is None else html.escape(token_text(decode([record.token])))
        spans.append(_verifier_span(token, n, len(draft)))
        head = f"k={record.k} {n}/{len(draft)}" if draft or record.k else "no draft"
        rows.append(_round_div(number, head, spans, n, len(draft)))
    return f'<div class="dl-rounds" data-rounds="{len(trace)}">{_ROUNDS_LEGEND}{"".join(rows)}</div>'


LIVE_ROUNDS = 20  # rounds a live update shows (the latest): the page re-renders the view at every update


def live_rounds_html(rounds, decode, last: int = LIVE_ROUNDS) -> str:
    """The latest ``last`` of the rounds streamed so far (``new``, ``accepted``, ``drafted`` of each):
    what each committed, its accepted draft tokens green and the verifier's own token after them as in
    ``rounds_html``; the rejected draft tokens are counted (✗n), their ids come with the final trace.
    ``data-rounds`` is the number of rounds so far. Only the latest are rendered, so that an update of a
    long run stays small (a browser re-rendering hundreds of rounds 20 times a second falls behind,
    and the Stop button with it); the final trace shows every round."""
    rows = []
    skipped = max(0, len(rounds) - last)
    if skipped:
        rows.append(
            f'<div class="dl-round dl-earlier">… {skipped} earlier rounds (all shown at the end)</div>'
        )
    for number, r in enumerate(rounds[skipped:], skipped + 1):
        n, new = r.accepted, list(r.new)
        spans = [
            f'<span class="dl-tok dl-acc">{html.escape(token_text(decode([t])))}</span>' for t in new[:n]
        ]
        if r.drafted > n:
            spans.append(f'<span class="dl-tok dl-rej" title="rejected draft tokens">✗{r.drafted - n}</span>')
        token = html.escape(token_text(decode([new[n]]))) if len(new) > n else None
        spans.append(_verifier_span(token, n, r.drafted))
        rows.append(_round_div(number, f"{n}/{r.drafted}" if r.drafted else "no draft", spans, n, r.drafted))
    return f'<div class="dl-rounds dl-live" data-rounds="{len(rounds)}">{_ROUNDS_LEGEND}{"".join(rows)}</div>'


# ---- summary table --------------------------------------------------------------------------

SUMMARY_HEADERS = [
    "column",
    "model",
    "config",
    "steps",
    "NFE",
    "tokens/forward",
    "tokens/s",
    "seconds",
    "correct",
]


def correctness_text(score: float | None) -> str:
    if score is None:
        return "—"
    return "✓" if score >= 1.0 else ("✗" if score <= 0.0 else f"{score:.2f}")


def summary_rows(entries: list[dict]) -> list[list]:
    """One row per column: ``entries`` hold column, model, config, status and (when done) the counts."""
    rows = []
    for e in entries:
        if e.get("status") != "done":
            rows.append(
                [
                    e["column"],
                    e.get("model", ""),
                    e.get("config", ""),
                    "",
                    "",
                    "",
                    "",
                    "",
                    e.get("status", "") + (f": {e['message']}" if e.get("message") else ""),
                ]
            )
            continue
        rows.append(
            [
                e["column"],
                e["model"],
                e["config"],
                e["steps"],
                e["nfe"],
                round(e["tpf"], 2),
                round(e["tps"], 1),
                round(e["seconds"], 2),
                correctness_text(e.get("score")),
            ]
        )
    return rows


def speculative_table(rows: list[dict]) -> list[list]:
    """Rows of the speculative comparison: name, result (SpeculativeResult), speedup (None: not known
    yet, an empty cell)."""
    out = []
    for row in rows:
        r = row["result"]
        out.append(
            [
                row["name"],
                r.rounds,
                round(r.tau, 2),
                round(r.tau_with_bonus, 2),
                round(r.tokens_per_verifier_forward, 2),
                round(r.acceptance_rate, 2),
                r.verifier_forwards,
                r.drafter_forwards,
                r.gen_tokens,
                round(r.seconds, 3),
                round(r.tokens_per_second, 1),
                "" if row["speedup"] is None else round(row["speedup"], 2),
            ]
        )
    return out


SPECULATIVE_HEADERS = [
    "decoding",
    "rounds",
    "τ",
    "τ + bonus",
    "tokens/verifier forward",
    "acceptance",
    "verifier forwards",
    "drafter forwards",
    "tokens",
    "seconds",
    "tokens/s",
    "speedup",
]


CSS = """
.dl-canvas{line-height:2.1;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px;
  padding:6px;border:1px solid #e5e7eb;border-radius:8px;background:#fafafa;min-height:3em;
  word-break:break-all}
.dl-tok{display:inline-block;white-space:pre;padding:0 3px;margin:1px;border-radius:4px;min-width:.9em;
  text-align:center;line-height:1.5;border:1px solid transparent}
.dl-mask{background:#e5e7eb;color:#9ca3af;border:1px dashed #9ca3af;font-size:10px}
.dl-eos{font-size:9px;opacity:.75;font-variant:small-caps}
.dl-fill{background:#f3f4f6;color:#6b7280}
.dl-block{outline:2px solid #f97316;outline-offset:1px;border-radius:5px;padding:1px 0;
  background:rgba(249,115,22,.06)}
.dl-block-key{display:inline-block;width:1.4em}
body.dl-conf-mode .dl-done{background:var(--cc)!important;color:var(--tc)!important}
body.dl-step-mode .dl-done{background:var(--cs)!important;color:var(--ts)!important}
.dl-legend{font-size:11px;color:#6b7280;display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:4px 0}
.dl-legend i{display:inline-flex;vertical-align:middle}
.dl-legend i span{display:inline-block;width:10px;height:10px}
body.dl-conf-mode .dl-legend-step,body:not(.dl-conf-mode) .dl-legend-conf{display:none}
.dl-counters{display:flex;flex-wrap:wrap;gap:4px 12px;align-items:baseline;font-size:13px;padding:4px 2px}
.dl-counter b{font-variant-numeric:tabular-nums;font-size:15px}
.dl-badge{font-size:11px;padding:1px 8px;border-radius:10px;background:#e5e7eb;text-transform:uppercase}
.dl-status-running .dl-badge{background:#dbeafe;color:#1d4ed8}
.dl-status-done .dl-badge{background:#dcfce7;color:#166534}
.dl-status-error .dl-badge{background:#fee2e2;color:#991b1b}
.dl-status-stopped .dl-badge{background:#fef3c7;color:#92400e}
.dl-message{width:100%;font-size:12px;color:#991b1b;white-space:pre-wrap}
.dl-status-stopped .dl-message{color:#92400e}
.dl-status-running .dl-message{color:#1d4ed8}
.dl-heat{margin-top:4px}
.dl-heat-axis{font-size:11px;color:#6b7280;margin-bottom:2px}
.dl-heat-grid{display:grid;background:#f3f4f6;border:1px solid #e5e7eb;gap:0}
.dl-heat-grid div{min-width:1px}
.dl-rounds{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px}
.dl-round{padding:1px 0;border-bottom:1px dotted #e5e7eb}
.dl-round-head{display:inline-block;min-width:9em;color:#6b7280;font-size:11px}
.dl-acc{background:#bbf7d0;color:#14532d}
.dl-rej{background:#fecaca;color:#7f1d1d;text-decoration:line-through}
.dl-rest{background:#fee2e2;color:#b91c1c;opacity:.6;text-decoration:line-through}
.dl-corr{background:#fde68a;color:#78350f;font-weight:600}
.dl-bonus{background:#bfdbfe;color:#1e3a8a;font-weight:600}
.dl-bonus sup{font-size:8px;margin-left:2px}
.dl-own{background:#e0e7ff;color:#3730a3}
.dl-end{color:#6b7280}
"""
