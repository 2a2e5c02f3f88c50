"""Plot lateness over time from the bench results: one PNG per result file.

Reads ``bench/results/*.json`` whose ``bench`` is ``fire_rate`` (one line per
step), ``seed_scenario`` (per run), ``failover`` (the whole run, with the
kills), ``restart`` (per run, with the kill / restart / ready instants) or
``peers`` (APScheduler and scheduler0 per job count), and writes
``bench/results/plots/<name>.png``: per slot second, the p99 lateness of first
deliveries (thick) and the p50 (thin) against time, the 1 s target dashed,
kills and restarts as vertical lines, the scenario and the results' git head
in the title. The ``series`` rows are ``_common.lateness_series``'s
``[seconds since origin, deliveries, p50, p99, max]``. A line is broken where
a slot second had no delivery. Files without any series are skipped (and
listed).

    python bench/plot.py [--only NAME_OR_GLOB ...] [--linear] [--results DIR] [--out DIR]
    python bench/plot.py --scale [--results DIR] [--out DIR]

``--scale`` instead draws the costs of ``bench/scale.py`` against the job
count J: one log-log PNG per cost (``plots/scale_<cost>.png``), a line per
cluster size, with the slope of a least-squares fit of log(cost) on log(J)
(1 = linear; with two or three J, a fit through two or three points) and the
slope of each step between consecutive J in the legend, the issue's target
where it has one, and writes the slopes to
``bench/results/scale_slopes.json`` (see ``scale_plots``).

``--only`` matches file names without ``.json`` (``fire_rate*``, ``smoke_*``).
Needs matplotlib (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as common

TARGET_S = 1.0
FLOOR_S = 1e-3  # log scale: lateness below 1 ms is drawn at 1 ms

Rows = list[list[float]]


@dataclass
class Mark:
    x: float
    label: str
    color: str
    style: str


@dataclass
class Plot:
    xlabel: str
    lines: list[tuple[str, Rows]] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)


# -- one extractor per bench -----------------------------------------------------------------


def fire_rate_plot(data: dict[str, Any]) -> Plot:
    plot = Plot("seconds since the first slot of the steady-state window")
    for step in data.get("steps", []):
        nodes = step.get("nodes", 1)
        label = f"{step['jobs']:,} jobs" + (f", {nodes} nodes" if nodes > 1 else "")
        plot.lines.append((label, step.get("series", [])))
    return plot


def seed_scenario_plot(data: dict[str, Any]) -> Plot:
    plot = Plot("seconds since the first slot on the jobs' grids (jobs @every 1m)")
    for run in data.get("runs", []):
        label = f"run {run['run']} ({run.get('mode', '?')}, {run.get('jobs', 0):,} jobs)"
        plot.lines.append((label, run.get("series", [])))
    return plot


def failover_plot(data: dict[str, Any]) -> Plot:
    plot = Plot("seconds since the first delivered slot")
    jobs = data.get("params", {}).get("jobs")
    plot.lines.append((f"{jobs:,} jobs @every 1s" if jobs else "all jobs", data.get("series", [])))
    for k in data.get("series_kills", []):
        color = "tab:red" if k["kind"] == "leader" else "tab:purple"
        plot.marks.append(Mark(k["t"], f"{k['kind']} kill", color, "-"))
        if k.get("restart_t") is not None:
            plot.marks.append(Mark(k["restart_t"], "victim restarted", "tab:gray", ":"))
    return plot


RESTART_MARKS = {
    "kill -9 all": ("black", "-"),
    "restart": ("tab:gray", ":"),
    "all ready": ("tab:green", "-."),
}


def restart_plot(data: dict[str, Any]) -> Plot:
    plot = Plot("seconds since kill -9 of all nodes (jobs @every 1m)")
    for run in data.get("runs", []):
        label = f"run {run['run']} ({run.get('jobs', 0):,} jobs)"
        plot.lines.append((label, run.get("series", [])))
        for m in run.get("series_marks", []):
            color, style = RESTART_MARKS.get(m["label"], ("tab:gray", "--"))
            plot.marks.append(Mark(m["t"], m["label"], color, style))
    return plot


def peers_plot(data: dict[str, Any]) -> Plot:
    plot = Plot("seconds since the first slot of the steady-state window")
    for step in data.get("steps", []):
        for side, name in (("apscheduler", "APScheduler"), ("scheduler0", "scheduler0")):
            if side in step:
                rows = step[side].get("series", [])
                plot.lines.append((f"{name}, {step['jobs']:,} jobs", rows))
    return plot


EXTRACTORS = {
    "fire_rate": fire_rate_plot,
    "seed_scenario": seed_scenario_plot,
    "failover": failover_plot,
    "restart": restart_plot,
    "peers": peers_plot,
}


# -- drawing ---------------------------------------------------------------------------------


def broken(rows: Rows, column: int, floor: float) -> tuple[list[float], list[float]]:
    """x and y of one column, with a NaN wherever a slot second had no delivery."""
    xs: list[float] = []
    ys: list[float] = []
    for row in rows:
        if xs and row[0] - xs[-1] > 1.5:
            xs.append(math.nan)
            ys.append(math.nan)
        xs.append(row[0])
        ys.append(max(row[column], floor))
    return xs, ys


def render(
    name: str, data: dict[str, Any], plot: Plot, out: Path, linear: bool, source: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [(label, rows) for label, rows in plot.lines if rows]
    cmap = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20")
    floor = 0.0 if linear else FLOOR_S
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    ymax = TARGET_S
    for i, (label, rows) in enumerate(lines):
        color = cmap(i % cmap.N)
        xs, p99 = broken(rows, 3, floor)
        _, p50 = broken(rows, 2, floor)
        ms = 3.0 if len(rows) > 30 else 7.0  # sparse (e.g. @every 1m) series: visible dots
        ax.plot(xs, p99, color=color, lw=1.6, marker=".", ms=ms, label=f"{label} p99")
        ax.plot(xs, p50, color=color, lw=0.7, marker=".", ms=ms / 2, alpha=0.8)
        ymax = max(ymax, *(y for y in p99 if not math.isnan(y)))
    ax.axhline(TARGET_S, color="black", ls="--", lw=0.9, label="target 1 s")
    seen: set[str] = set()
    for m in sorted(plot.marks, key=lambda m: m.x):
        ax.axvline(
            m.x,
            color=m.color,
            ls=m.style,
            lw=0.9,
            alpha=0.8,
            label=None if m.label in seen else m.label,
        )
        seen.add(m.label)
    if linear:
        ax.set_ylim(bottom=0, top=ymax * 1.1)
        ax.set_ylabel("lateness (s)")
    else:
        ax.set_yscale("log")
        ax.set_ylim(bottom=FLOOR_S, top=ymax * 2)
        ax.set_ylabel("lateness (s, log; < 1 ms drawn at 1 ms)")
    xs_all = [row[0] for _, rows in lines for row in rows] + [m.x for m in plot.marks]
    lo, hi = min(xs_all), max(xs_all)
    if hi - lo < 10:  # a single slot second (or a few): a readable 10 s wide axis
        mid = (lo + hi) / 2
        lo, hi = mid - 4, mid + 4
    pad = max(1.0, 0.03 * (hi - lo))  # keep marks off the frame
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel(plot.xlabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=7,
        title="thick: p99, thin: p50",
        title_fontsize=7,
        frameon=False,
    )
    machine = data.get("machine", {})
    ax.set_title(
        f"{data.get('bench', '?')}: {name} (git {machine.get('git_head', '?')}, "
        f"{machine.get('when', '?')})",
        fontsize=10,
    )
    command = data.get("command", "")
    if command:
        fig.text(0.01, 0.01, command[:150], fontsize=6, color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    skipped = [label for label, rows in plot.lines if not rows]
    note = f" (no series for: {', '.join(skipped)})" if skipped else ""
    print(f"wrote {path} from {source.name}: {len(lines)} line(s){note}")


# -- scale: each cost against the job count -------------------------------------------------


@dataclass
class Cost:
    name: str
    label: str
    get: Any  # result dict -> float | None
    target: float | None = None


def _max_node(key: str, scale: float = 1e6) -> Any:
    def get(r: dict[str, Any]) -> float | None:
        values = r.get(key) or {}
        return max(values.values()) / scale if values else None

    return get


def _size(key: str) -> Any:
    def get(r: dict[str, Any]) -> float | None:
        sizes = r.get("sizes") or {}
        return max(v[key] for v in sizes.values()) / 1e6 if sizes else None

    return get


def _at(*path: str, scale: float = 1.0) -> Any:
    def get(r: dict[str, Any]) -> float | None:
        value: Any = r
        for key in path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return None if value is None else float(value) * scale

    return get


SCALE_COSTS = [
    Cost("create_seconds", "creation time, POSTs of 1,000 (s)", _at("create", "create_seconds")),
    Cost("owned_seconds", "last POST -> schedulers own every job (s)", _at("owned_s")),
    Cost("vmhwm_mb", "VmHWM after creation, highest node (MB)", _max_node("vmhwm_after_create")),
    Cost("vmrss_mb", "VmRSS after creation, highest node (MB)", _max_node("vmrss_after_create")),
    Cost(
        "peak_rss_mb", "VmRSS peak over the whole case, highest node (MB)", _max_node("peak_vmrss")
    ),
    Cost("db_mb", "state.db + WAL, largest node (MB)", _size("db_bytes")),
    Cost("journal_mb", "raft.journal, largest node (MB)", _size("journal_bytes")),
    Cost("snapshot_mb", "raft.snapshot, largest node (MB)", _size("snapshot_bytes")),
    Cost(
        "snapshot_seconds",
        "longest snapshot in the window (s)",
        _at("window", "snapshot_seconds_max"),
    ),
    Cost(
        "write_during_snapshot_seconds",
        "longest write overlapping a snapshot (s)",
        _at("window", "max_write_latency_during_snapshot_s"),
        1.0,
    ),
    Cost(
        "restart_ready_seconds",
        "cold restart -> every node ready (s)",
        _at("cold_restart", "all_ready_s"),
    ),
    Cost(
        "restart_first_fire_seconds",
        "cold restart -> first fire (s)",
        _at("cold_restart", "first_fire_s"),
        30.0,
    ),
    Cost(
        "restart_on_grid_seconds",
        "cold restart -> every job on its grid (s)",
        _at("cold_restart", "on_grid_s"),
    ),
    Cost("kill_write_seconds", "leader kill -> write accepted (s)", _at("leader_kill", "write_s")),
    Cost(
        "kill_first_fire_seconds",
        "leader kill -> first fire of a later slot (s)",
        _at("leader_kill", "first_fire_s"),
    ),
    Cost(
        "kill_lateness_seconds",
        "leader kill: worst lateness of the slots due next (s)",
        _at("leader_kill", "lateness_max_of_those_s"),
    ),
    Cost(
        "deep_page_ms",
        "GET /jobs last page of 1,000, median (ms)",
        _at("reads", "deep_job_page", "median_ms"),
        100.0,
    ),
    Cost(
        "executions_by_job_ms",
        "GET /executions?job_id=, median (ms)",
        _at("reads", "executions_by_job", "median_ms"),
        100.0,
    ),
    Cost(
        "lateness_p50_seconds",
        "fire lateness p50 in the window (s)",
        _at("window", "lateness_p50_s"),
    ),
    Cost(
        "lateness_p99_seconds",
        "fire lateness p99 in the window (s)",
        _at("window", "lateness_p99_s"),
        1.0,
    ),
    Cost(
        "cpu_us_per_fire",
        "CPU of all nodes per delivered fire (us)",
        _at("window", "cpu_us_per_fire"),
    ),
    Cost(
        "fires_per_second",
        "fires delivered per second in the window",
        _at("window", "received_per_s"),
    ),
    Cost(
        "node_cpu_cores", "CPU of all nodes in the window (cores)", _at("window", "node_cpu_share")
    ),
    Cost(
        "restart_vmhwm_mb",
        "VmHWM after the cold restart, highest node (MB)",
        lambda r: _max_node("vmhwm_after")(r.get("cold_restart") or {}),
    ),
]


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(cost) on log(J); None below two positive points."""
    pts = [(math.log10(j), math.log10(v)) for j, v in points if j > 0 and v > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def segments(points: list[tuple[float, float]]) -> list[float]:
    """The slope between each two consecutive points (J ascending), log-log."""
    return [
        round(math.log10(v2 / v1) / math.log10(j2 / j1), 2)
        for (j1, v1), (j2, v2) in itertools.pairwise(points)
        if j2 > j1 > 0 and v1 > 0 and v2 > 0
    ]


def growth(b: float | None) -> str:
    if b is None:
        return "not fitted"
    if b < -0.2:
        return "falls"
    if b < 0.2:
        return "flat"
    if b < 0.9:
        return "sub-linear"
    if b <= 1.1:
        return "linear"
    return "worse than linear"


def scale_plots(results: Path, out: Path) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for path in sorted(results.glob("scale_*n_*.json")):
        if not re.fullmatch(r"scale_\d+n_\d+\.json", path.name):
            continue
        data = json.loads(path.read_text())
        if data.get("bench") == "scale":
            runs.append(data)
    if not runs:
        print(f"no scale_*n_*.json in {results}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    slopes: dict[str, Any] = {}
    for cost in SCALE_COSTS:
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
        slopes[cost.name] = {"label": cost.label}
        drawn = False
        for size, color in ((1, "tab:blue"), (3, "tab:orange")):
            points = sorted(
                (float(r["jobs"]), v)
                for r in runs
                if r["nodes"] == size and (v := cost.get(r)) is not None and v > 0
            )
            if not points:
                continue
            b = slope(points)
            steps = segments(points)
            slopes[cost.name][f"{size}n"] = {
                "points": points,
                "slope": None if b is None else round(b, 3),
                "growth": growth(b),
                "segment_slopes": steps,
                "last_segment_growth": growth(steps[-1]) if steps else "not fitted",
            }
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            fitted = ""
            if b is not None:
                fitted = f", slope {b:.2f} ({growth(b)}, {len(points)} points)"
                if len(steps) > 1:
                    fitted += f"; per step {', '.join(f'{x:.2f}' for x in steps)}"
            ax.plot(xs, ys, color=color, marker="o", lw=1.6, label=f"{size} node(s){fitted}")
            if b is not None:  # a slope-1 guide through the first point
                guide = [ys[0] * x / xs[0] for x in xs]
                ax.plot(xs, guide, color=color, ls=":", lw=0.8, alpha=0.7)
            drawn = True
        if not drawn:
            plt.close(fig)
            continue
        if cost.target is not None:
            ax.axhline(cost.target, color="black", ls="--", lw=0.9, label=f"target {cost.target:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("jobs J (log)")
        ax.set_ylabel(cost.label + " (log)", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, title="dotted: slope 1 (linear)", title_fontsize=7)
        heads = sorted({r["machine"].get("git_head", "?") for r in runs})
        ax.set_title(f"scale: {cost.label} (git {', '.join(heads)})", fontsize=9)
        fig.tight_layout()
        path = out / f"scale_{cost.name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        print(f"wrote {path}")
    table = results / "scale_slopes.json"
    table.write_text(json.dumps(slopes, indent=2) + "\n")
    print(f"wrote {table}")
    for name, entry in slopes.items():
        parts = [
            f"{k}: {v['slope']} ({v['growth']}, {len(v['points'])} pts, steps"
            f" {v['segment_slopes']})"
            for k, v in entry.items()
            if k != "label"
        ]
        print(f"{name:32} {'; '.join(parts)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="result names or globs (without .json)"
    )
    parser.add_argument("--linear", action="store_true", help="linear y axis (default: log)")
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=None, help="default: <results>/plots")
    parser.add_argument(
        "--scale", action="store_true", help="bench/scale.py's costs against J, log-log"
    )
    args = parser.parse_args(argv)
    out = args.out or args.results / "plots"
    if args.scale:
        return scale_plots(args.results, out)

    files = sorted(args.results.glob("*.json"))
    if args.only:
        files = [f for f in files if any(fnmatch.fnmatch(f.stem, p) for p in args.only)]
        if not files:
            print(f"no result matches {' '.join(args.only)} in {args.results}", file=sys.stderr)
            return 1
    skipped: list[str] = []
    written = 0
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            skipped.append(f"{path.name} (unreadable: {exc})")
            continue
        bench = data.get("bench") if isinstance(data, dict) else None
        extract = EXTRACTORS.get(str(bench))
        if extract is None:
            skipped.append(f"{path.name} (bench {bench!r} has no lateness series)")
            continue
        plot = extract(data)
        if not any(rows for _, rows in plot.lines):
            skipped.append(f"{path.name} (no series: results from before it was recorded?)")
            continue
        render(path.stem, data, plot, out, args.linear, path)
        written += 1
    for s in skipped:
        print(f"skipped {s}")
    print(f"{written} plot(s) written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
