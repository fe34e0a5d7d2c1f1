"""Writing a sweep's results: tidy CSV tables, summaries over seeds, figures, divergence report.

The tables are tidy (one row per run and record, one column per variable), so
``pandas.read_csv(workdir + "/metrics.csv")`` gives a frame ready for groupby.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from jaxopt_lab.engine.sweep import SweepResult

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _grid_points(res: SweepResult):
  for g in np.ndindex(res.grid_shape):
    yield g, {name: float(axis[i]) for (name, axis), i in zip(res.grid.items(), g)}


def write_runs(res: SweepResult, path: str) -> None:
  """One row per run: seed, hyperparameters, ``diverged_at`` (-1 if finite)."""
  rows = res.runs()
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)


def write_metrics(res: SweepResult, path: str) -> None:
  """Tidy table: seed, hyperparameters, step, then one column per metric."""
  names = sorted(res.metrics)
  hp_names = list(res.grid) + list(res.fixed)
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["seed", *hp_names, "step", *names])
    for s, seed in enumerate(res.seeds):
      for g, point in _grid_points(res):
        hp_vals = [point[n] for n in res.grid] + list(res.fixed.values())
        cols = [res.metrics[n][(s, *g)] for n in names]
        for r, step in enumerate(res.steps):
          w.writerow([int(seed), *hp_vals, int(step), *(repr(float(c[r])) for c in cols)])


def summarize(res: SweepResult) -> list[dict]:
  r"""Per grid point, record and metric: mean, standard error, quantiles over the finite seeds.

  The standard error is :math:`s / \sqrt{n}` with the sample standard deviation ``s`` (ddof = 1) over
  the ``n`` seeds whose run has not diverged; diverged seeds are counted, not averaged.
  """
  rows = []
  for g, point in _grid_points(res):
    ok = ~res.diverged[(slice(None), *g)]
    for name in sorted(res.metrics):
      vals = res.metrics[name][(slice(None), *g)][ok]  # (n_ok, R)
      for r, step in enumerate(res.steps):
        v = vals[:, r] if vals.size else np.array([np.nan])
        n = int(ok.sum())
        row = {**point, **res.fixed, "metric": name, "step": int(step), "n_seeds": n,
               "n_diverged": int((~ok).sum()), "mean": float(np.mean(v)),
               "sem": float(np.std(v, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")}
        row.update({f"q{int(q * 100):02d}": float(x) for q, x in zip(QUANTILES, np.quantile(v, QUANTILES))})
        rows.append(row)
  return rows


def write_summary(res: SweepResult, path: str) -> None:
  rows = summarize(res)
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)


def write_divergence(res: SweepResult, path: str) -> None:
  """JSON list of the runs that became non-finite, with the step where each did."""
  bad = [r for r in res.runs() if r["diverged_at"] >= 0]
  with open(path, "w") as f:
    json.dump({"num_runs": int(res.diverged.size), "num_diverged": len(bad), "runs": bad}, f, indent=1)


def plot_metric(res: SweepResult, name: str, log_y: bool = False, log_x: bool = False,
                experiment: str = "") -> Figure:
  """Median over finite seeds vs step, one line per grid point, shaded 5-95% over seeds; a Figure.

  A plain ``matplotlib.figure.Figure`` (no pyplot state: the caller saves it; nothing to close). The
  title names the experiment, the fixed hyperparameters and what the band is. A metric with nothing
  finite left to draw (every run diverged) gives a figure that says so instead of empty axes.
  """
  fig = Figure(figsize=(5.5, 3.8), layout="constrained")
  ax = fig.add_subplot()
  drawn, positive = 0, True
  for g, point in _grid_points(res):
    ok = ~res.diverged[(slice(None), *g)]
    vals = res.metrics[name][(slice(None), *g)][ok]
    if not vals.size:
      continue
    lo, med, hi = np.quantile(vals, [0.05, 0.5, 0.95], axis=0)
    label = ", ".join(f"{k}={v:g}" for k, v in point.items()) or "all runs"
    (line,) = ax.plot(res.steps, med, label=label)
    if vals.shape[0] > 1:
      ax.fill_between(res.steps, lo, hi, alpha=0.2, color=line.get_color())
    drawn += 1
    positive &= bool(np.all(vals > 0))
  fixed = ", ".join(f"{k}={v:g}" for k, v in res.fixed.items())
  n_seeds, n_runs, n_div = len(res.seeds), int(res.diverged.size), int(res.diverged.sum())
  head = f"{experiment}: {name}" if experiment else name
  band = (f"line: median, shaded: 5-95% over {n_seeds} seeds (diverged runs left out)"
          if n_seeds > 1 else "1 seed, no band")
  ax.set_title("\n".join(filter(None, (head, fixed, band + (f"; {n_div}/{n_runs} runs diverged"
                                                              if n_div else "")))), fontsize=8)
  ax.set_xlabel("step")
  ax.set_ylabel(name)
  if not drawn:
    ax.text(0.5, 0.5, f"nothing to plot: all {n_runs} runs diverged\n(see divergence.json)",
            ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig
  if log_y and positive:  # a log axis for a metric that can be <= 0 would drop points silently
    ax.set_yscale("log")
  if log_x:
    ax.set_xscale("log")
  ax.legend(fontsize=7)
  return fig


def write_all(res: SweepResult, workdir: str, plot_metrics: Sequence[str] = (),
              log_y: Sequence[str] = (), log_x: Sequence[str] = (), experiment: str = "") -> None:
  """Writes runs.csv, metrics.csv, summary.csv, divergence.json and figures/<metric>.png."""
  write_runs(res, os.path.join(workdir, "runs.csv"))
  write_metrics(res, os.path.join(workdir, "metrics.csv"))
  write_summary(res, os.path.join(workdir, "summary.csv"))
  write_divergence(res, os.path.join(workdir, "divergence.json"))
  os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
  for name in plot_metrics:
    fig = plot_metric(res, name, log_y=name in log_y, log_x=name in log_x, experiment=experiment)
    fig.savefig(os.path.join(workdir, "figures", f"{name}.png"), dpi=120)
