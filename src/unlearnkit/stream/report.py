"""The report of a stream: its accuracy trajectory over versions, with fallbacks and verifications marked.

``unlearn report OUT`` (for the ``--out`` folder of ``unlearn stream``) writes ``OUT/report.md`` with
``OUT/trajectory.png`` beside it, and a self-contained ``OUT/report.html``; ``unlearn stream`` writes them when it
ends. Every file is written whole (temporary name, then rename), so a reader never finds half a report.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from unlearnkit import files
from unlearnkit.bench.report import html_table, png_bytes
from unlearnkit.stream.engine import StreamResult, load_result


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def steps_table(result: StreamResult) -> str:
    """One Markdown row per version: requests, samples, accuracies (%), seconds, fallback, verification gap."""
    base = result.baseline
    lines = ["| version | requests | samples | forget acc | retain acc | test acc | seconds | made by | "
             "test gap to retrain | reversals |",
             "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|",
             f"| 0 | (input) | | | {_pct(base['retain_accuracy'])} | {_pct(base['test_accuracy'])} | | | | |"]
    for s in result.steps:
        ids = ", ".join(s.request_ids) if len(s.request_ids) <= 3 else f"{s.request_ids[0]} … {s.request_ids[-1]}"
        made = f"{s.method} (fallback)" if s.fallback else s.method
        gap = _pct(s.verified["gap"]["test_accuracy"]) if s.verified else ""
        rev = str(len(s.verified["reversals"])) if s.verified else ""
        lines.append(f"| {s.version} | {ids} | {s.n_forget} | {_pct(s.forget_accuracy)} | {_pct(s.retain_accuracy)} | "
                     f"{_pct(s.test_accuracy)} | {s.seconds:.2f} | {made} | {gap} | {rev} |")
    return "\n".join(lines)


def trajectory_png(result: StreamResult) -> bytes:
    """Retain, test and forget accuracy over versions; fallbacks as red dashed lines, the retrained references'
    test accuracy (at verifications) as black crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result.steps
    versions = [0, *(s.version for s in steps)]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.plot(versions, [result.baseline["retain_accuracy"], *(s.retain_accuracy for s in steps)], marker=".",
            label="retain accuracy")
    ax.plot(versions, [result.baseline["test_accuracy"], *(s.test_accuracy for s in steps)], marker=".",
            label="test accuracy")
    ax.plot(versions[1:], [s.forget_accuracy for s in steps], marker=".", alpha=0.6,
            label="forget accuracy (this version's requests)")
    checked = [s for s in steps if s.verified]
    if checked:
        ax.plot([s.version for s in checked], [s.verified["reference_accuracy"]["test_accuracy"] for s in checked],
                "kx", label="test accuracy of the retrained reference")
    for k, s in enumerate(s for s in steps if s.fallback):
        ax.axvline(s.version, color="red", linestyle="--", alpha=0.6, label="fallback to exact" if k == 0 else None)
    config = result.config
    ax.set_title(f"{config['method']}, policy {config['policy']}"
                 + (f", max drift {config['max_drift']:g}" if config.get("max_drift") else ""), fontsize=10)
    ax.set_xlabel("version (one per applied batch of requests)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    data = png_bytes(fig)
    plt.close(fig)
    return data


def write_stream_report(out: str | Path) -> tuple[Path, Path]:
    """Write OUT/report.md (+ OUT/trajectory.png) and OUT/report.html for the stream in ``out``."""
    out = Path(out)
    result = load_result(out)
    doc = result.to_json()
    summary = (f"{doc['requests_applied']} requests in {len(result.steps)} versions with {result.config['method']} "
               f"(policy {result.config['policy']}); {doc['fallbacks']} fallbacks to exact retraining; "
               f"{len(doc['reversals'])} reversals found at verifications. Total {doc['total_seconds']:.1f} s "
               f"(unlearning {doc['unlearning_seconds']:.1f} s, verification {doc['verify_seconds']:.1f} s)")
    if doc["retrain_seconds"] is not None:
        summary += (f"; one retraining costs {doc['retrain_seconds']:.1f} s ({doc['retrain_seconds_source']}), so "
                    f"retraining after every request would cost {doc['retrain_every_request_seconds']:.1f} s "
                    f"({doc['cost_vs_retrain_every_request']:.3f}× of that spent here)")
    summary += "."
    table = steps_table(result)
    png = trajectory_png(result)
    files.write_bytes_atomic(out / "trajectory.png", png, force=True)  # the report's own output, regenerated
    md = ["# Stream report", "", summary, "", "![accuracy trajectory](trajectory.png)", "", "Accuracies in %.", "",
          table, ""]
    if doc["reversals"]:
        md += ["## Reversals", "", "| request | applied in | checked at | accuracy | reference | when applied |",
               "|---|---:|---:|---:|---:|---:|"]
        md += [f"| {r['request_id']} | {r['applied_in']} | {r['checked_at']} | {_pct(r['accuracy'])} | "
               f"{_pct(r['reference_accuracy'])} | {_pct(r['accuracy_when_applied'])} |" for r in doc["reversals"]]
        md.append("")
    md_path, html_path = out / "report.md", out / "report.html"
    files.write_text_atomic(md_path, "\n".join(md) + "\n", force=True)
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>unlearnkit stream report</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
            "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}img{max-width:100%}"
            f"</style></head><body><h1>Stream report</h1><p>{html.escape(summary)}</p>"
            f'<img alt="accuracy trajectory" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f"<p>Accuracies in %.</p>{html_table(table)}</body></html>\n")
    files.write_text_atomic(html_path, page, force=True)
    return md_path, html_path
