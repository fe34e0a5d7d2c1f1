"""Writing a sweep's results: tidy CSV tables, summaries over seeds, figures, divergence report.

The tables are tidy (one row per run and record, one column per variable), so
``pandas.read_csv(workdir + "/metrics.csv")`` gives a frame ready for groupby.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

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


def plot_metric(res: SweepResult, name: str, log_y: bool = False):
  """Median over finite seeds vs step, one line per grid point, with the 5-95% band; a Figure."""
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for g, point in _grid_points(res):
    ok = ~res.diverged[(slice(None), *g)]
    vals = res.metrics[name][(slice(None), *g)][ok]
    if not vals.size:
      continue
    lo, med, hi = np.quantile(vals, [0.05, 0.5, 0.95], axis=0)
    label = ", ".join(f"{k}={v:g}" for k, v in point.items()) or "all runs"
    (line,) = ax.plot(res.steps, med, label=label)
    ax.fill_between(res.steps, lo, hi, alpha=0.2, color=line.get_color())
  ax.set_xlabel("step")
  ax.set_ylabel(name)
  ax.set_title(", ".join(f"{k}={v:g}" for k, v in res.fixed.items()) + f"  ({len(res.seeds)} seeds)",
               fontsize=8)
  if log_y:
    ax.set_yscale("log")
  ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def write_all(res: SweepResult, workdir: str, plot_metrics: Sequence[str] = (),
              log_y: Sequence[str] = ()) -> None:
  """Writes runs.csv, metrics.csv, summary.csv, divergence.json and figures/<metric>.png."""
  write_runs(res, os.path.join(workdir, "runs.csv"))
  write_metrics(res, os.path.join(workdir, "metrics.csv"))
  write_summary(res, os.path.join(workdir, "summary.csv"))
  write_divergence(res, os.path.join(workdir, "divergence.json"))
  os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
  for name in plot_metrics:
    fig = plot_metric(res, name, log_y=name in log_y)
    fig.savefig(os.path.join(workdir, "figures", f"{name}.png"), dpi=120)
    plt.close(fig)
