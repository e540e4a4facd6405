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

from dllm.eval.aggregate import QUALITY_LEVELS, setting_label, write_csv

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
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
               "#7f7f7f"]
    return {f: palette[i % len(palette)] for i, f in enumerate(sorted(families))}


def _log2_axis(ax, xs) -> None:
    ax.set_xscale("log", base=2)
    lo, hi = min(xs, default=1.0), max(xs, default=2.0)
    ticks = [2**i for i in range(int(math.floor(math.log2(max(lo, 0.5)))), int(math.ceil(math.log2(max(hi, 1)))) + 1)]
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
    cols, nrows = _grid(len(tasks))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.8 * nrows + 0.6), squeeze=False, sharey=True)
    plotted = []
    for idx, task in enumerate(tasks):
        ax = axes[idx // cols][idx % cols]
        trows = [r for r in rows if r["task"] == task]
        for (family, cache_key), series in sorted(_by(trows, lambda r: (r["family"], (r["cache"], r["cache_params"]))).items()):
            for block, bseries in sorted(_by(series, lambda r: r["block"]).items()):
                bseries.sort(key=lambda r: r["parallelism"])
                style = LINESTYLES[caches.index(cache_key) % len(LINESTYLES)]
                ax.plot([r["parallelism"] for r in bseries], [r["quality"] for r in bseries], style,
                        marker=MARKERS[0], ms=4, color=colours[family], lw=1.3)
                plotted += [{"model": model, "task": task, "family": family, "setting": r["setting"],
                             "cache": r["cache"], "block": block, "parallelism": r["parallelism"],
                             "quality": r["quality"], "pareto": r.get("pareto", False)} for r in bseries]
        front = _front([(r["parallelism"], r["quality"]) for r in trows])
        if front:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", lw=0.8, ls="--",
                    alpha=0.7)
            ax.scatter([p[0] for p in front], [p[1] for p in front], s=60, facecolors="none", edgecolors="black",
                       lw=0.8, zorder=5)
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
    if len(caches) > 1:
        handles += [plt.Line2D([], [], color="grey", ls=LINESTYLES[i % len(LINESTYLES)], label=f"cache {c[0]} {c[1] if c[1] != '{}' else ''}")
                    for i, c in enumerate(caches)]
    handles.append(plt.Line2D([], [], color="black", ls="--", marker="o", mfc="none", label="Pareto front"))
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"{model}: quality vs parallelism per task", y=1.0)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(handles) > 4), 1, 0.98))
    return _save(fig, out / f"quality_vs_parallelism_{_slug(model)}.png", plotted)


def tradeoff(avg_rows: list[dict], oracle_rows: list[dict], max_tps_rows: list[dict], out: Path,
             task_set: str = "all") -> Path | None:
    plt = _plt()
    avg_rows = [r for r in avg_rows if r["task_set"] == task_set]
    if not avg_rows:
        return None
    models = sorted({r["model"] for r in avg_rows})
    colours = _colours(list({r["family"] for r in avg_rows}))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.2), squeeze=False, sharey=True)
    plotted = []
    for ax, model in zip(axes[0], models):
        mrows = [r for r in avg_rows if r["model"] == model]
        xs = [r["parallelism"] for r in mrows]
        for q in QUALITY_LEVELS:
            ax.axhline(q, color="grey", lw=0.7, ls=":", zorder=0)
            ax.text(1.0, q, f" {q:g}%", transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=7,
                    color="grey")
        for key, series in sorted(_by(mrows, lambda r: (r["family"], r["cache"], r["block"])).items()):
            family, cache, block = key
            series.sort(key=lambda r: r["parallelism"])
            label = family + (f" [{cache}]" if cache != "none" else "") + (f" block {block}" if block != "full" else "")
            ax.plot([r["parallelism"] for r in series], [r["quality"] for r in series], "-o", ms=4, lw=1.4,
                    color=colours[family], label=label)
            plotted += [{"model": model, "kind": "curve", "family": family, "setting": r["setting"], "cache": cache,
                         "block": block, "parallelism": r["parallelism"], "quality": r["quality"]} for r in series]
            for mt in max_tps_rows:
                if (mt["model"], mt["task_set"], mt["family"], mt["cache"], mt["block"]) == (model, task_set, family,
                                                                                           cache, block):
                    for q in QUALITY_LEVELS:
                        x = mt[f"max_tps@{q:g}"]
                        if x > 0:
                            ax.plot([x, x], [q - 2.5, q + 2.5], color=colours[family], lw=1.6)
                            plotted.append({"model": model, "kind": f"max_tps@{q:g}", "family": family, "cache": cache,
                                            "block": block, "parallelism": x, "quality": q})
        for orow in oracle_rows:
            if orow["model"] == model and orow["scope"] == "task_set" and orow["name"] == task_set:
                ax.scatter([orow["parallelism"]], [orow["quality"]], marker="*", s=220, color=colours[orow["family"]],
                           edgecolors="black", lw=0.7, zorder=6)
                xs.append(orow["parallelism"])
                plotted.append({"model": model, "kind": "oracle", "family": orow["family"], "cache": orow["cache"],
                                "block": orow["block"], "parallelism": orow["parallelism"], "quality": orow["quality"]})
        _log2_axis(ax, xs)
        ax.set_ylim(-3, 103)
        ax.set_title(f"{model} (mean of {mrows[0]['n_tasks']} tasks)")
        ax.set_xlabel(X_LABEL)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", frameon=True, framealpha=0.9)
    axes[0][0].set_ylabel("average quality (%)")
    fig.text(0.5, -0.03, "★ per-sample oracle (best setting per sample, fewest steps among ties);"
             " | ticks: Max-TPS at quality ≥ 80 / 75 / 70 %", ha="center", fontsize=8)
    fig.tight_layout()
    return _save(fig, out / f"tradeoff_{_slug(task_set)}.png", plotted)


def quality_vs_block(rows: list[dict], out: Path) -> Path | None:
    plt = _plt()
    blocks = {r["block_length"] for r in rows}
    if len({r["block"] for r in rows}) < 2 and len(blocks) < 2:
        return None
    models = sorted({r["model"] for r in rows})
    colours = _colours(list({r["family"] for r in rows}))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.0), squeeze=False, sharey=True)
    plotted = []
    for ax, model in zip(axes[0], models):
        mrows = [r for r in rows if r["model"] == model and not (r["reference"] and r["family"].startswith("reference"))]
        series_by = _by(mrows, lambda r: (r["family"], r["setting"], r["cache"]))
        for i, ((family, setting, cache), series) in enumerate(sorted(series_by.items())):
            per_block = _by(series, lambda r: r["block_length"] if r["block"] != "full" else r["gen_length"])
            if len(per_block) < 2:
                continue
            tasks = set.intersection(*({r["task"] for r in v} for v in per_block.values()))
            if not tasks:
                continue
            pts = sorted((b, sum(r["quality"] for r in v if r["task"] in tasks) / len(tasks))
                         for b, v in per_block.items())
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS[i % len(MARKERS)], ms=4, lw=1.2,
                    color=colours[family], label=f"{family} {setting}" + (f" [{cache}]" if cache != "none" else ""))
            plotted += [{"model": model, "family": family, "setting": setting, "cache": cache, "block_length": b,
                         "quality": q, "n_tasks": len(tasks)} for b, q in pts]
        ax.set_xscale("log", base=2)
        ax.set_xlabel("block length (tokens, log2; largest = whole canvas)")
        ax.set_title(model)
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=7)
    axes[0][0].set_ylabel("average quality (%)")
    fig.suptitle("semi-autoregressive decoding: quality vs block length")
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
        for family, series in sorted(_by(mrows, lambda r: r["family"]).items()):
            ax.scatter([r["tokens_per_second"] for r in series], [r["quality"] for r in series], s=28,
                       color=colours[family], label=family, zorder=3)
            for r in series:
                tag = r["setting"] + (f" [{r['cache']}]" if r["cache"] != "none" else "")
                if not math.isnan(r["speedup"]):
                    tag += f" ×{r['speedup']:.1f}"
                ax.annotate(tag, (r["tokens_per_second"], r["quality"]), textcoords="offset points", xytext=(4, 3),
                            fontsize=6.5, color=colours[family])
                plotted.append({"model": model, "family": family, "setting": r["setting"], "cache": r["cache"],
                                "block": r["block"], "tokens_per_second": r["tokens_per_second"],
                                "quality": r["quality"], "speedup": r["speedup"]})
        ax.set_xscale("log")
        ax.set_xlabel("throughput (generated tokens / s, log)")
        ax.set_title(f"{model} (mean of {mrows[0]['n_tasks']} tasks)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=7)
    axes[0][0].set_ylabel("average quality (%)")
    fig.text(0.5, -0.03, "labels: setting and speedup (tokens/s) over the 1-token/step no-cache reference",
             ha="center", fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "throughput_vs_quality.png", plotted)


def unmask_histogram(records: list[dict], out: Path) -> Path | None:
    plt = _plt()
    if not records:
        return None
    families = sorted({r["family"] for r in records})
    cols, nrows = _grid(len(families), 3)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    plotted = []
    for idx, family in enumerate(families):
        ax = axes[idx // cols][idx % cols]
        frecs = [r for r in records if r["family"] == family]
        settings = _by(frecs, lambda r: (r.get("k") or 0, str(sorted(r["sampler_params"].items())), r["model"]))
        cmap = plt.get_cmap("viridis")
        keys = sorted(settings)
        for i, key in enumerate(keys):
            counts: dict[int, int] = defaultdict(int)
            for r in settings[key]:
                for c in r["unmask_counts"]:
                    counts[c] += 1
            total = sum(counts.values())
            xs = sorted(counts)
            r0 = settings[key][0]
            label = f"{r0['model']} {setting_label(r0)}"
            ax.plot(xs, [counts[x] / total for x in xs], marker="o", ms=3, lw=1,
                    color=cmap(i / max(1, len(keys) - 1)), label=label)
            plotted += [{"family": family, "model": r0["model"], "setting": setting_label(r0), "tokens_in_step": x,
                         "fraction_of_steps": counts[x] / total, "steps": counts[x]} for x in xs]
        ax.set_xscale("symlog", base=2, linthresh=1)
        ax.set_yscale("log")
        ax.set_title(family)
        ax.set_xlabel("tokens committed in one step")
        ax.set_ylabel("fraction of steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=1 + (len(keys) > 6))
    for idx in range(len(families), nrows * cols):
        axes[idx // cols][idx % cols].axis("off")
    fig.suptitle("unmask counts per step (spikes explain aggressive-threshold collapse)")
    fig.tight_layout()
    return _save(fig, out / "unmask_histogram.png", plotted)


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
