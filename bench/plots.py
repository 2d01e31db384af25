"""PNG figures for docs/performance.md, where a picture reads better than a table.

matplotlib is optional (`pip install -e '.[bench]'`): without it every function returns None
and the report keeps its tables.  The figures are drawn from the report's JSON data only, so
they can be redrawn without re-running a benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:  # the Agg backend: no display on a server or in CI
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # pragma: no cover - depends on the environment
    plt = None

WIDTH, HEIGHT, DPI = 7.5, 4.2, 110


def available() -> bool:
    return plt is not None


def idle_requests(
    work_orders: dict[int, dict[str, int]], parts: dict[int, dict[str, int]], path: Path
) -> Path | None:
    """Requests per idle cycle against data size, log-log, Click Maint and mantenimiento apart.

    `work_orders` / `parts`: size -> {"cm": requests, "mt": requests}.
    """
    if plt is None or not (work_orders or parts):
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT), dpi=DPI)
    series = [
        (work_orders, "cm", "work_orders: Click Maint", "o-", "tab:blue"),
        (work_orders, "mt", "work_orders: mantenimiento", "o--", "tab:orange"),
        (parts, "cm", "part_usage: Click Maint", "s-", "tab:green"),
        (parts, "mt", "part_usage: mantenimiento", "s--", "tab:red"),
    ]
    for data, key, label, style, color in series:
        if not data:
            continue
        sizes = sorted(data)
        values = [max(0.8, data[s][key]) for s in sizes]  # log axis: show 0 just below 1
        ax.plot(sizes, values, style, color=color, label=label)
        for size, value in zip(sizes, values, strict=True):
            ax.annotate(
                f"{data[size][key]:,}",
                (size, value),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
                color=color,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(x=0.12, y=0.25)  # room for the value labels
    ax.set_xlabel("records held (work orders, or parts in the catalogue)")
    ax.set_ylabel("requests per idle cycle")
    ax.set_title("Idle cycle cost against data size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def convergence(runs: list[dict[str, Any]], spec: dict[str, Any], path: Path) -> Path | None:
    """Cumulative Click Maint requests over time for each run, against the budget's ceiling
    (`limit` requests per window from t = 0), with the moment each run converged."""
    if plt is None or not runs:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT), dpi=DPI)
    limit, window = spec["limit"], spec["window"]
    horizon = max(r["timeline"][-1][0] for r in runs if r["timeline"]) if runs else window
    steps_t, steps_n, t = [], [], 0.0
    while t <= horizon + window:
        steps_t += [t, t + window]
        steps_n += [limit * (t / window + 1)] * 2
        t += window
    ax.plot(
        steps_t, steps_n, color="grey", lw=1, ls=":", label=f"ceiling: {limit} per {window:g} s"
    )
    ax.axhline(
        spec["required"],
        color="black",
        lw=0.8,
        ls="--",
        label=f"required: {spec['required']:,} requests",
    )
    colors = {"daemon": "tab:blue", "once": "tab:orange"}
    for run in runs:
        times = [p[0] for p in run["timeline"]]
        totals = [p[1] for p in run["timeline"]]
        color = colors.get(run["mode"])
        plain = run["label"].replace("`", "")  # Markdown code marks read badly in a legend
        ax.plot(
            times,
            totals,
            color=color,
            label=f"{plain} (converged {run['converged']:.0f} s)",
        )
        ax.axvline(run["converged"], color=color, lw=0.8, alpha=0.6)
    ax.axvline(spec["t_min"], color="black", lw=0.8, alpha=0.6)
    ax.annotate(
        "theoretical minimum",
        (spec["t_min"], 0),
        textcoords="offset points",
        xytext=(3, 6),
        fontsize=8,
        rotation=90,
    )
    ax.set_xlim(0, horizon * 1.02)
    ax.set_ylim(0, max(spec["required"] * 1.25, max(p[1] for r in runs for p in r["timeline"])))
    ax.set_xlabel("seconds since the syncd process started")
    ax.set_ylabel("Click Maint requests (server side)")
    ax.set_title(f"{spec['size']:,} changes each way under {limit} requests / {window:g} s")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
