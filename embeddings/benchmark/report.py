"""The benchmark's table (with qabot / peer ratios) and its plot."""

from __future__ import annotations

from pathlib import Path

from embeddings.benchmark.harness import BenchReport, SpeedResult

SPEED_COLUMNS = (  # (key, heading, format, better) -- better: "high" or "low" values win
    ("ingest_passages_per_s", "ingest p/s", "{:.1f}", "high"),
    # The encoder alone on the same passages, same run: the gap to ingest p/s is everything around it.
    ("encode_only_passages_per_s", "encoder p/s", "{:.1f}", "high"),
    ("query_ms_p50", "query p50 ms", "{:.1f}", "low"),
    ("query_ms_p95", "query p95 ms", "{:.1f}", "low"),
    ("cold_start_s", "cold start s", "{:.2f}", "low"),
    ("peak_rss_mb", "peak RSS MB", "{:.0f}", "low"),
    ("index_mb", "index MB", "{:.1f}", "low"),
)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def format_table(report: BenchReport) -> str:
    lines: list[str] = []
    sizes = sorted({r.size for r in report.speed})
    for size in sizes:
        rows = [r for r in report.speed if r.size == size]
        qabot = next((r for r in rows if r.system == "qabot"), None)
        lines.append(f"\n{size:,} passages")
        head = f"{'system':<20}" + "".join(f"{h:>15}" for _, h, _, _ in SPEED_COLUMNS)
        lines.append(head)
        lines.append("-" * len(head))
        for r in rows:
            cells = [("copied" if k == "ingest_passages_per_s" and not r.ingested and not r.grown_by
                      else "-" if getattr(r, k) is None else fmt.format(getattr(r, k))) for k, _, fmt, _ in SPEED_COLUMNS]
            lines.append(f"{r.system:<20}" + "".join(f"{c:>15}" for c in cells))
        if any(not r.ingested for r in rows):
            lines.append("(copied: built from the largest ingested index without encoding; see replicate.py)")
            grown = max(r.grown_by for r in rows)
            if grown:
                lines.append(f"(ingest p/s and peak RSS here: {grown:,} fresh passages ingested into the copy)")
        if qabot is not None:
            for r in rows:
                if r is qabot:
                    continue
                lines.append(f"{'qabot / ' + r.system:<20}" + "".join(
                    f"{_ratio(getattr(qabot, k) or 0.0, getattr(r, k) or 0.0):>15}" for k, _, _, _ in SPEED_COLUMNS))
    datasets = sorted({r.dataset for r in report.recall})
    for ds in datasets:
        recall_rows = [r for r in report.recall if r.dataset == ds]
        lines.append(f"\nrecall on {ds} (held-out questions: {recall_rows[0].questions:,})")
        head = f"{'system':<20}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'p50 ms':>9}"
        lines.append(head)
        lines.append("-" * len(head))
        for rr in recall_rows:
            lines.append(f"{rr.system:<20}{rr.recall['1']:>8.3f}{rr.recall['5']:>8.3f}{rr.recall['10']:>8.3f}"
                         f"{rr.query_ms_p50:>9.1f}")
    if report.dense:
        lines.append("\ndense index alone (one thread, 500 questions, recall@10 against exact search)")
        head = (f"{'vectors':>10}{'kind':>6}{'build s':>9}{'file MB':>9}{'load s':>8}{'p50 ms':>8}{'p95 ms':>8}"
                f"{'R@10':>7}{'RSS MB':>8}")
        lines.append(head)
        lines.append("-" * len(head))
        for d in report.dense:
            build = d["flat_build_s"] if d["kind"] == "flat" else d["ivf_build_s"]
            size = d["flat_mb"] if d["kind"] == "flat" else d["ivf_mb"]
            lines.append(f"{d['vectors']:>10,}{d['kind']:>6}{build:>9.1f}{size:>9.0f}{d['load_s']:>8.2f}"
                         f"{d['query_ms_p50']:>8.2f}{d['query_ms_p95']:>8.2f}{d['recall@10']:>7.3f}"
                         f"{d['query_rss_mb']:>8.0f}")
    return "\n".join(lines).lstrip("\n")


def plot(report: BenchReport, path: Path) -> list[str]:
    """Bar charts of what the run measured (speed panels if it ran sizes, recall@1 if it ran recall sets);
    returns the panel titles drawn, none if there was nothing to draw (then no file is written)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        from embeddings.errors import QabotError

        raise QabotError("--plot needs matplotlib: pip install matplotlib") from exc
    systems = list(dict.fromkeys([r.system for r in report.speed] + [r.system for r in report.recall]))
    speed_panels = [("ingest_passages_per_s", "ingest (passages/s, higher is better)"),
                    ("query_ms_p50", "query p50 (ms, lower is better)"),
                    ("peak_rss_mb", "peak RSS (MB, lower is better)")] if report.speed else []
    recall_title = "recall@1 (held-out, higher is better)"
    titles = [t for _, t in speed_panels] + ([recall_title] if report.recall else [])
    if not titles:
        return []
    fig, axes = plt.subplots(1, len(titles), figsize=(5 * len(titles), 4.2), squeeze=False)
    panels = list(axes[0])
    sizes = sorted({r.size for r in report.speed})
    width = 0.8 / max(1, len(systems))
    for ax, (key, title) in zip(panels, speed_panels, strict=False):
        for i, system in enumerate(systems):
            vals = []
            for size in sizes:
                hit: SpeedResult | None = next((r for r in report.speed if r.system == system and r.size == size), None)
                vals.append(getattr(hit, key) if hit else 0.0)
            ax.bar([j + i * width for j in range(len(sizes))], vals, width, label=system)
        ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(sizes))], [f"{s:,}" for s in sizes])
        ax.set_xlabel("passages")
        ax.set_title(title, fontsize=10)
    if report.recall:
        ax = panels[-1]
        datasets = sorted({r.dataset for r in report.recall})
        for i, system in enumerate(systems):
            vals = [next((r.recall["1"] for r in report.recall if r.system == system and r.dataset == d), 0.0)
                    for d in datasets]
            ax.bar([j + i * width for j in range(len(datasets))], vals, width, label=system)
        ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(datasets))], datasets)
        ax.set_ylim(0, 1)
        ax.set_title(recall_title, fontsize=10)
    panels[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return titles
