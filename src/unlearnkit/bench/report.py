"""``unlearn report DIR``: tables and plots of a bench result store, as report.md and a self-contained report.html.

For each dataset and forget spec: one row per method variant with the mean ± std over seeds of every
stored metric that has a direction, ranked by ``gap.average`` (lower is closer to retraining), plus two
plots: the trade-off of gap to retraining against speedup (one point per method, log x) and per-metric
bars with error bars. The HTML embeds the plots as PNG data, so it is one file to send.

    unlearn report runs/bench/smoke
"""

from __future__ import annotations

import base64
import html
import io
import json
import statistics
from pathlib import Path

from unlearnkit import files
from unlearnkit.bench.store import ResultStore, default_url
from unlearnkit.errors import ConfigError

COLUMNS = ("gap.average", "forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy", "js_divergence",
           "speedup")
NEURIPS_COLUMNS = ("neurips.forget_quality", "neurips.score")  # when the bench config asked for metric `neurips`


def _value(row: dict, column: str) -> float | None:
    report = row["report"]
    if column == "speedup":
        return row["speedup"]
    if column == "gap.average":
        return report.get("gap", {}).get("average")
    if column.startswith("neurips."):
        key = {"neurips.forget_quality": "forget_quality", "neurips.score": "neurips_score"}[column]
        return (report.get("neurips") or {}).get(key)
    return report.get(column)


def columns(entries: list[dict]) -> tuple[str, ...]:
    """The table's columns: the standard ones, plus the NeurIPS ones when some cell computed them."""
    return COLUMNS + tuple(c for c in NEURIPS_COLUMNS if any(c in e["stats"] for e in entries))


def aggregate(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(dataset name and model, forget spec) -> one entry per method variant with mean and std per column,
    ranked by mean gap.average."""
    groups: dict[tuple[str, str], dict[tuple[str, str], list[dict]]] = {}
    for r in rows:
        d = json.loads(r["dataset"])
        options = "".join(f" {k}={v}" for k, v in sorted((d.get("options") or {}).items()))  # derived data apart
        scenario = (f"{d['name']}{options} / {d['model']}", r["forget"])
        variant = (r["method"], json.dumps(r["params"], sort_keys=True, separators=(",", ":")))
        groups.setdefault(scenario, {}).setdefault(variant, []).append(r)
    out = {}
    for scenario, variants in groups.items():
        entries = []
        for (method, params), rs in variants.items():
            stats = {}
            for col in COLUMNS + NEURIPS_COLUMNS:
                values = [v for v in (_value(r, col) for r in rs) if v is not None]
                if values:
                    stats[col] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
            label = method if params == "{}" else f"{method} {params}"
            epsilons = [e for r in rs for e in ((r["report"].get("neurips") or {}).get("epsilons") or [])]
            entries.append({"label": label, "method": method, "seeds": len(rs), "stats": stats,
                            "epsilons": epsilons})
        entries.sort(key=lambda e: (e["method"] != "retrain", e["stats"].get("gap.average", (float("inf"),))[0]))
        out[scenario] = entries
    return out


def best_per_column(entries: list[dict], cols: tuple[str, ...]) -> dict[str, set[int]]:
    """Column -> indices of the best method variants (ties included), by each metric's ``higher_is_better``;
    for metrics without a direction (forget accuracy, MIA), the mean closest to the retrained reference's."""
    from unlearnkit.metrics import METRICS

    ref = next((e for e in entries if e["method"] == "retrain"), None)
    best = {}
    for col in cols:
        info = METRICS.get(col)
        scored = []
        for i, e in enumerate(entries):
            if e["method"] == "retrain" or col not in e["stats"]:
                continue
            mean = e["stats"][col][0]
            if info is not None and info.higher_is_better is not None:
                scored.append((-mean if info.higher_is_better else mean, i))
            elif ref is not None and col in ref["stats"]:
                scored.append((abs(mean - ref["stats"][col][0]), i))
        if scored:
            top = min(score for score, _ in scored)
            best[col] = {i for score, i in scored if round(score, 4) == round(top, 4)}
    return best


def _markdown_table(entries: list[dict]) -> str:
    cols = columns(entries)
    best = best_per_column(entries, cols)
    lines = ["| rank | method | seeds | " + " | ".join(cols) + " |", "|---:|---|---:|" + "---:|" * len(cols)]
    for rank, e in enumerate(entries):
        cells = []
        for c in cols:
            text = f"{e['stats'][c][0]:.4f} ± {e['stats'][c][1]:.4f}" if c in e["stats"] else ""
            cells.append(f"**{text}**" if rank in best.get(c, ()) else text)
        lines.append(f"| {rank if e['method'] != 'retrain' else 'ref'} | {e['label']} | {e['seeds']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plots(title: str, entries: list[dict]) -> list[tuple[str, bytes]]:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pngs = []
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for e in entries:
        if e["method"] == "retrain" or "speedup" not in e["stats"] or "gap.average" not in e["stats"]:
            continue
        (x, _), (y, dy) = e["stats"]["speedup"], e["stats"]["gap.average"]
        ax.errorbar(x, y, yerr=dy, fmt="o", capsize=3)
        ax.annotate(e["label"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    times = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x")
    ax.xaxis.set_major_formatter(times)
    ax.xaxis.set_minor_formatter(times)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("speedup over retraining (log)")
    ax.set_ylabel("gap.average to retrain (lower is better)")
    ax.set_title(f"{title}: closeness vs cost")
    ax.grid(alpha=0.3)
    pngs.append(("trade-off", png_bytes(fig)))
    metrics = [c for c in ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.8), sharey=False)
    labels = [e["label"] for e in entries]
    for ax, metric in zip(axes, metrics, strict=True):
        means = [e["stats"].get(metric, (0.0, 0.0))[0] for e in entries]
        stds = [e["stats"].get(metric, (0.0, 0.0))[1] for e in entries]
        ax.barh(range(len(entries)), means, xerr=stds, capsize=2)
        ax.set_yticks(range(len(entries)), labels if ax is axes[0] else [""] * len(entries), fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.invert_yaxis()
    fig.suptitle(f"{title}: mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    pngs.append(("metrics", png_bytes(fig)))
    with_eps = [e for e in entries if e["epsilons"]]
    if with_eps:  # the NeurIPS metric ran: where on the 0..50 scale do the per-example epsilons fall?
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        bins = [i * 2.5 for i in range(21)]
        for e in with_eps:
            ax.hist(e["epsilons"], bins=bins, histtype="step", linewidth=1.4, label=e["label"],
                    weights=[1 / len(e["epsilons"])] * len(e["epsilons"]))
        ax.set_xlabel("per-example epsilon (lower: unlearned and retrained models harder to tell apart)")
        ax.set_ylabel("share of forget examples")
        ax.set_title(f"{title}: NeurIPS forgetting quality, per-example epsilons", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        pngs.append(("epsilons", png_bytes(fig)))
    plt.close("all")
    return pngs


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def write_report(out: str | Path, *, db: str | None = None) -> tuple[Path, Path]:
    """Write OUT/report.md (tables, plots as PNG files beside it) and OUT/report.html (self-contained).

    They are this command's own output: a rerun replaces them, each file written whole (temporary name, then
    rename) so a reader never finds half a report."""
    out = Path(out)
    if db is None and not (out / "results.sqlite").is_file():
        raise ConfigError(f"no results in {out} (results.sqlite not found); run `unlearn bench CONFIG --out {out}` "
                          "first, or pass --db")
    rows = ResultStore(db or default_url(out)).rows()
    if not rows:
        raise ConfigError(f"the result store for {out} holds no finished cell yet; run `unlearn bench` first")
    md = ["# Benchmark report", "", f"{len(rows)} finished cells. Ranked by gap.average to the retrained model "
          "(lower is closer); `ref` is the retrained reference. Values are mean ± std over seeds; bold marks the best "
          "per column by the metric's direction (for forget accuracy and MIA: closest to `ref`).", ""]
    body = [f"<h1>Benchmark report</h1><p>{len(rows)} finished cells; ranked by gap.average to the retrained "
            "model (lower is closer). Values are mean ± std over seeds.</p>"]
    for i, ((dataset, forget), entries) in enumerate(aggregate(rows).items()):
        title = f"{dataset}, forget {forget}"
        table = _markdown_table(entries)
        md += [f"## {title}", "", table, ""]
        body.append(f"<h2>{html.escape(title)}</h2>{html_table(table)}")
        for name, png in _plots(title, entries):
            file = out / f"report-{i}-{name}.png"
            files.write_bytes_atomic(file, png, force=True)  # the command's own output, regenerated
            md += [f"![{name}]({file.name})", ""]
            body.append(f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    md_path, html_path = out / "report.md", out / "report.html"
    files.write_text_atomic(md_path, "\n".join(md) + "\n", force=True)  # regenerated: the command's own output
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>unlearnkit report</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
            "padding:3px 6px;text-align:right}td:nth-child(2){text-align:left}img{max-width:100%}"
            "</style></head><body>" + "".join(body) + "</body></html>\n")
    files.write_text_atomic(html_path, page, force=True)
    return md_path, html_path


def html_table(markdown: str) -> str:
    lines = markdown.splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    return "".join(out) + "</table>"
