"""Report figures (matplotlib, Agg backend). Every PNG is written next to the CSV of what it shows.

* ``quality_vs_parallelism_<model>.png``: one panel per task, quality vs tokens per step (log2),
  one colour per sampler family, one line style per cache, the Pareto front as a black step line;
* ``tradeoff_<task set>.png``: average over tasks per model, with each family's per-sample oracle
  (star) and the Max-TPS@80/75/70 guide lines and crossings;
* ``quality_vs_block.png``: average quality vs block length per family setting (when the sweep has
  more than one block length);
* ``throughput_vs_quality.png``: tokens/s vs quality averaged over tasks, labelled, with speedups
  over the 1-token/step reference;
* ``unmask_histogram.png``: how many tokens each step committed, per family and setting.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from dllm.eval.aggregate import QUALITY_LEVELS, block_label, knob_value, setting_label, write_csv

LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">"]
X_LABEL = "tokens per step (committed positions / step, log2)"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 8, "figure.dpi": 110})
    return plt


def _colours(families: list[str]) -> dict[str, str]:
    palette = [
        "#1f77b4",
        "#d62728",
        "#2ca02c",
        "#ff7f0e",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#17becf",
        "#bcbd22",
        "#7f7f7f",
    ]
    return {f: palette[i % len(palette)] for i, f in enumerate(sorted(families))}


def _log2_axis(ax, xs) -> None:
    ax.set_xscale("log", base=2)
    lo, hi = min(xs, default=1.0), max(xs, default=2.0)
    ticks = [
        2**i
        for i in range(int(math.floor(math.log2(max(lo, 0.5)))), int(math.ceil(math.log2(max(hi, 1)))) + 1)
    ]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.set_xlim(min(ticks) / 1.15, max(ticks) * 1.15)


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Pareto-optimal points sorted by x (for a step line)."""
    front = [p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)]
    return sorted(set(front))


def _save(fig, path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    write_csv(path.with_suffix(".csv"), rows)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _grid(n: int, max_cols: int = 4):
    cols = min(max_cols, n)
    return cols, math.ceil(n / cols)


# ------------------------------------------------------------------------------------- figures
def per_task_grid(rows: list[dict], out: Path, model: str) -> Path | None:
    plt = _plt()
    rows = [r for r in rows if r["model"] == model]
    if not rows:
        return None
    tasks = sorted({r["task"] for r in rows})
    colours = _colours(list({r["family"] for r in rows}))
    caches = sorted({(r["cache"], r["cache_params"]) for r in rows})
    blocks = _block_order({r["block"] for r in rows})
    cols, nrows = _grid(len(tasks))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.8 * nrows + 0.6), squeeze=False, sharey=True)
    plotted = []
    for idx, task in enumerate(tasks):
        ax = axes[idx // cols][idx % cols]
        trows = [r for r in rows if r["task"] == task]
        by_family = _by(trows, lambda r: (r["family"], (r["cache"], r["cache_params"])))
        for (family, cache_key), series in sorted(by_family.items()):
            for block, bseries in sorted(_by(series, lambda r: r["block"]).items()):
                bseries.sort(key=lambda r: r["parallelism"])
                style = LINESTYLES[caches.index(cache_key) % len(LINESTYLES)]
                ax.plot(
                    [r["parallelism"] for r in bseries],
                    [r["quality"] for r in bseries],
                    style,
                    marker=MARKERS[blocks.index(block) % len(MARKERS)],
                    ms=4,
                    color=colours[family],
                    lw=1.3,
                )
                plotted += [
                    {
                        "model": model,
                        "task": task,
                        "family": family,
                        "setting": r["setting"],
                        "cache": r["cache"],
                        "block": block,
                        "parallelism": r["parallelism"],
                        "quality": r["quality"],
                        "pareto": r.get("pareto", False),
                    }
                    for r in bseries
                ]
        front = _front([(r["parallelism"], r["quality"]) for r in trows])
        if front:
            ax.step(
                [p[0] for p in front],
                [p[1] for p in front],
                where="pre",
                color="black",
                lw=0.8,
                ls="--",
                alpha=0.7,
            )
            ax.scatter(
                [p[0] for p in front],
                [p[1] for p in front],
                s=60,
                facecolors="none",
                edgecolors="black",
                lw=0.8,
                zorder=5,
            )
        _log2_axis(ax, [r["parallelism"] for r in trows])
        ax.set_ylim(-3, 103)
        ax.set_title(task)
        ax.grid(alpha=0.3)
        if idx % cols == 0:
            ax.set_ylabel("quality (%)")
        if idx // cols == nrows - 1 or idx + cols >= len(tasks):
            ax.set_xlabel("tokens per step (log2)")
    for idx in range(len(tasks), nrows * cols):
        axes[idx // cols][idx % cols].axis("off")
    handles = [plt.Line2D([], [], color=c, marker="o", lw=1.3, label=f) for f, c in sorted(colours.items())]
    if len(blocks) > 1:
        handles += [
            plt.Line2D([], [], color="grey", ls="", marker=MARKERS[i % len(MARKERS)], label=f"block {b}")
            for i, b in enumerate(blocks)
        ]
    if len(caches) > 1:
        handles += [
            plt.Line2D(
                [],
                [],
                color="grey",
                ls=LINESTYLES[i % len(LINESTYLES)],
                label=f"cache {name} {params if params != '{}' else ''}",
            )
            for i, (name, params) in enumerate(caches)
        ]
    handles.append(plt.Line2D([], [], color="black", ls="--", marker="o", mfc="none", label="Pareto front"))
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(4, len(handles)),
        frameon=False,
        bbox_to_anchor=(0.5, -0.02),
    )
    fig.suptitle(f"{model}: quality vs parallelism per task", y=1.0)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(handles) > 4), 1, 0.98))
    return _save(fig, out / f"quality_vs_parallelism_{_slug(model)}.png", plotted)


def tradeoff(
    avg_rows: list[dict], oracle_rows: list[dict], max_tps_rows: list[dict], out: Path, task_set: str = "all"
) -> Path | None:
    plt = _plt()
    avg_rows = [r for r in avg_rows if r["task_set"] == task_set]
    if not avg_rows:
        return None
    models = sorted({r["model"] for r in avg_rows})
    blocks = _block_order({r["block"] for r in avg_rows})
    colours = _colours(list({r["family"] for r in avg_rows}))
    caches = sorted({r["cache"] for r in avg_rows})
    cols, nrows = len(blocks), len(models)  # one row per model, one column per block length
    fig, axes = plt.subplots(nrows, cols, figsize=(5.0 * cols, 4.0 * nrows), squeeze=False, sharey=True)
    plotted = []
    for idx, (model, block) in enumerate((m, b) for m in models for b in blocks):
        ax = axes[idx // cols][idx % cols]
        prows = [r for r in avg_rows if r["model"] == model and r["block"] == block]
        if not prows:
            ax.axis("off")
            continue
        xs = [r["parallelism"] for r in prows]
        for q in QUALITY_LEVELS:
            ax.axhline(q, color="grey", lw=0.7, ls=":", zorder=0)
            ax.text(
                1.0,
                q,
                f" {q:g}%",
                transform=ax.get_yaxis_transform(),
                va="center",
                ha="left",
                fontsize=7,
                color="grey",
            )
        for (family, cache), series in sorted(_by(prows, lambda r: (r["family"], r["cache"])).items()):
            series.sort(key=lambda r: r["parallelism"])
            ax.plot(
                [r["parallelism"] for r in series],
                [r["quality"] for r in series],
                LINESTYLES[caches.index(cache) % len(LINESTYLES)],
                marker="o",
                ms=4,
                lw=1.4,
                color=colours[family],
                label=family + (f" [{cache}]" if len(caches) > 1 else ""),
            )
            plotted += [
                {
                    "model": model,
                    "block": block,
                    "kind": "curve",
                    "family": family,
                    "setting": r["setting"],
                    "cache": cache,
                    "parallelism": r["parallelism"],
                    "quality": r["quality"],
                }
                for r in series
            ]
            for mt in max_tps_rows:
                if (mt["model"], mt["task_set"], mt["family"], mt["cache"], mt["block"]) != (
                    model,
                    task_set,
                    family,
                    cache,
                    block,
                ):
                    continue
                for q in QUALITY_LEVELS:
                    x = mt[f"max_tps@{q:g}"]
                    if x > 0:
                        ax.plot([x], [q], marker="|", ms=11, mew=2, color=colours[family], zorder=5)
                        plotted.append(
                            {
                                "model": model,
                                "block": block,
                                "kind": f"max_tps@{q:g}",
                                "family": family,
                                "cache": cache,
                                "parallelism": x,
                                "quality": q,
                            }
                        )
        for orow in oracle_rows:
            if (orow["model"], orow["block"], orow["scope"], orow["name"]) == (
                model,
                block,
                "task_set",
                task_set,
            ):
                ax.scatter(
                    [orow["parallelism"]],
                    [orow["quality"]],
                    marker="*",
                    s=220,
                    color=colours[orow["family"]],
                    edgecolors="black",
                    lw=0.7,
                    zorder=6,
                )
                xs.append(orow["parallelism"])
                plotted.append(
                    {
                        "model": model,
                        "block": block,
                        "kind": "oracle",
                        "family": orow["family"],
                        "cache": orow["cache"],
                        "parallelism": orow["parallelism"],
                        "quality": orow["quality"],
                    }
                )
        _log2_axis(ax, xs)
        ax.set_ylim(-3, 103)
        ax.set_title(f"{model}, block {block} (mean of {prows[0]['n_tasks']} tasks)")
        ax.set_xlabel(X_LABEL)
        ax.grid(alpha=0.3)
        if idx % cols == 0:
            ax.set_ylabel("average quality (%)")
        ax.legend(loc="best", frameon=True, framealpha=0.9)
    fig.text(
        0.5,
        -0.02,
        "★ per-sample oracle of the family (best setting per sample, fewest steps among ties)"
        "    | marks: Max-TPS, the largest tokens/step with average quality ≥ 80 / 75 / 70 %",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout()
    return _save(fig, out / f"tradeoff_{_slug(task_set)}.png", plotted)


def quality_vs_block(rows: list[dict], out: Path) -> Path | None:
    """Average quality vs block length, one panel per (model, family), one line per setting."""
    plt = _plt()
    blocks = _block_order({r["block"] for r in rows})
    if len(blocks) < 2:
        return None
    rows = [r for r in rows if not r["family"].startswith("reference")]
    models, families = sorted({r["model"] for r in rows}), sorted({r["family"] for r in rows})
    cols, nrows = len(families), len(models)  # one row per model, one column per family
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.6 * nrows), squeeze=False, sharey=True)
    plotted = []
    cmap = plt.get_cmap("viridis")
    for idx, (model, family) in enumerate((m, f) for m in models for f in families):
        ax = axes[idx // cols][idx % cols]
        frows = [r for r in rows if r["model"] == model and r["family"] == family]
        if not frows:
            ax.axis("off")
            continue
        settings = sorted(
            _by(frows, lambda r: (r["setting"], r["cache"])).items(),
            key=lambda kv: (_num(kv[1][0]["knob_value"]), kv[0]),
        )
        for i, ((setting, cache), series) in enumerate(settings):
            per_block = _by(series, lambda r: r["block"])
            tasks = set.intersection(*({r["task"] for r in v} for v in per_block.values()))
            if len(per_block) < 2 or not tasks:
                continue
            pts = sorted(
                (blocks.index(b), sum(r["quality"] for r in v if r["task"] in tasks) / len(tasks), b)
                for b, v in per_block.items()
            )
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o",
                ms=4,
                lw=1.3,
                color=cmap(i / max(1, len(settings) - 1)),
                label=setting + (f" [{cache}]" if cache != "none" else ""),
            )
            plotted += [
                {
                    "model": model,
                    "family": family,
                    "setting": setting,
                    "cache": cache,
                    "block": b,
                    "quality": q,
                    "n_tasks": len(tasks),
                }
                for _, q, b in pts
            ]
        ax.set_xticks(range(len(blocks)))
        ax.set_xticklabels(blocks)
        ax.set_xlabel("block length (tokens; full = whole canvas)")
        ax.set_title(f"{model}: {family}")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        if idx % cols == 0:
            ax.set_ylabel("average quality (%)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=7, framealpha=0.9)
    fig.suptitle("semi-autoregressive decoding: quality vs block length (mean over tasks)")
    fig.tight_layout()
    return _save(fig, out / "quality_vs_block.png", plotted)


def throughput_vs_quality(avg_rows: list[dict], out: Path, task_set: str = "all") -> Path | None:
    plt = _plt()
    avg_rows = [r for r in avg_rows if r["task_set"] == task_set]
    if not avg_rows:
        return None
    models = sorted({r["model"] for r in avg_rows})
    colours = _colours(list({r["family"] for r in avg_rows}))
    fig, axes = plt.subplots(1, len(models), figsize=(5.4 * len(models), 4.2), squeeze=False, sharey=True)
    plotted = []
    for ax, model in zip(axes[0], models):
        mrows = sorted((r for r in avg_rows if r["model"] == model), key=lambda r: r["tokens_per_second"])
        front = set(_front([(r["tokens_per_second"], r["quality"]) for r in mrows]))
        fx = sorted(front)
        ax.step(
            [p[0] for p in fx], [p[1] for p in fx], where="pre", color="black", lw=0.8, ls="--", alpha=0.6
        )
        blocks = _block_order({r["block"] for r in mrows})
        for (family, block), series in sorted(_by(mrows, lambda r: (r["family"], r["block"])).items()):
            ax.scatter(
                [r["tokens_per_second"] for r in series],
                [r["quality"] for r in series],
                s=28,
                color=colours[family],
                marker=MARKERS[blocks.index(block) % len(MARKERS)],
                zorder=3,
                label=family + (f", block {block}" if len(blocks) > 1 else ""),
            )
            for r in series:
                tag = r["setting"] + (f" [{r['cache']}]" if r["cache"] != "none" else "")
                if not math.isnan(r["speedup"]):
                    tag += f" ×{r['speedup']:.1f}"
                if (r["tokens_per_second"], r["quality"]) in front:
                    ax.annotate(
                        tag,
                        (r["tokens_per_second"], r["quality"]),
                        textcoords="offset points",
                        xytext=(4, 3),
                        fontsize=7,
                        color=colours[family],
                    )
                plotted.append(
                    {
                        "model": model,
                        "family": family,
                        "setting": r["setting"],
                        "cache": r["cache"],
                        "block": r["block"],
                        "tokens_per_second": r["tokens_per_second"],
                        "quality": r["quality"],
                        "speedup": r["speedup"],
                        "pareto": (r["tokens_per_second"], r["quality"]) in front,
                    }
                )
        ax.set_xscale("log")
        lo, hi = ax.get_xlim()
        ax.set_xlim(lo, hi * 1.6)  # room for the labels
        from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("throughput (generated tokens / s, log)")
        ax.set_title(f"{model} (mean of {mrows[0]['n_tasks']} tasks)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=7)
    axes[0][0].set_ylabel("average quality (%)")
    fig.text(
        0.5,
        -0.03,
        "dashed: throughput-quality Pareto front, its points labelled with the setting and the"
        " speedup (tokens/s) over the 1-token/step no-cache reference",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout()
    return _save(fig, out / "throughput_vs_quality.png", plotted)


def _pow2_bins(max_count: int) -> list[tuple[int, int]]:
    """Bins 1, 2, 3-4, 5-8, ... up to ``max_count``."""
    bins, lo, hi = [(1, 1)], 2, 2
    while lo <= max_count:
        bins.append((lo, hi))
        lo, hi = hi + 1, hi * 2
    return bins


def unmask_histogram(records: list[dict], out: Path) -> Path | None:
    """Share of steps by tokens committed in the step (power-of-two bins); one panel per (model, family,
    block), one bar per setting."""
    plt = _plt()
    if not records:
        return None
    adaptive = [r for r in records if r.get("knob") != "k"]
    records = adaptive or records  # fixed-k families commit k every step: nothing to see
    models = sorted({r["model"] for r in records})
    columns = sorted(
        {(r["family"], block_label(r)) for r in records}, key=lambda fb: (fb[0], _block_order([fb[1]]))
    )
    bins = _pow2_bins(max((max(r["unmask_counts"], default=1) for r in records), default=1))
    labels = [f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in bins]
    fig, axes = plt.subplots(
        len(models), len(columns), figsize=(5.2 * len(columns), 3.4 * len(models)), squeeze=False, sharey=True
    )
    cmap = plt.get_cmap("viridis")
    plotted = []
    for i, model in enumerate(models):
        for j, (family, block) in enumerate(columns):
            ax = axes[i][j]
            precs = [
                r
                for r in records
                if r["model"] == model and r["family"] == family and block_label(r) == block
            ]
            if not precs:
                ax.axis("off")
                continue
            settings = sorted(_by(precs, lambda r: (_num(knob_value(r)), setting_label(r))).items())
            width = 0.8 / len(settings)
            for n, ((_, setting), srecs) in enumerate(settings):
                counts = [c for r in srecs for c in r["unmask_counts"]]
                shares = [sum(lo <= c <= hi for c in counts) / len(counts) for lo, hi in bins]
                ax.bar(
                    [b + (n - (len(settings) - 1) / 2) * width for b in range(len(bins))],
                    shares,
                    width,
                    color=cmap(n / max(1, len(settings) - 1)),
                    label=setting,
                )
                plotted += [
                    {
                        "model": model,
                        "family": family,
                        "block": block,
                        "setting": setting,
                        "tokens_in_step": label,
                        "share_of_steps": share,
                        "steps": len(counts),
                    }
                    for label, share in zip(labels, shares)
                ]
            ax.set_yscale("log")
            ax.set_xticks(range(len(bins)))
            ax.set_xticklabels(labels)
            ax.set_title(f"{model}: {family}, block {block}")
            ax.set_xlabel("tokens committed in one step")
            if j == 0:
                ax.set_ylabel("share of steps (log)")
            ax.grid(alpha=0.3, axis="y")
            ax.legend(fontsize=7, loc="upper center", framealpha=0.9)
    fig.suptitle("tokens committed per step (large spikes are what makes aggressive thresholds fail)")
    fig.tight_layout()
    return _save(fig, out / "unmask_histogram.png", plotted)


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.inf


def _block_order(blocks) -> list[str]:
    """Block labels in increasing length, "full" (the whole canvas) last."""
    return sorted(blocks, key=lambda b: (b == "full", int(b) if b != "full" else 0))


def _by(rows, key) -> dict:
    out: dict = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


def make_all(records: list[dict], tables: dict, out: Path) -> list[Path]:
    """Every figure that the data supports; returns the PNG paths."""
    rows, avg = tables["aggregate"], tables["averages"]
    paths = [per_task_grid(rows, out, m) for m in sorted({r["model"] for r in rows})]
    for task_set in sorted({r["task_set"] for r in avg}):
        paths.append(tradeoff(avg, tables["oracle"], tables["max_tps"], out, task_set))
    paths.append(quality_vs_block(rows, out))
    paths.append(throughput_vs_quality(avg, out))
    paths.append(unmask_histogram(records, out))
    return [p for p in paths if p is not None]
