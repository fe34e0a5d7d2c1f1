"""Writing a sweep's results: tidy CSV tables, summaries over seeds, figures, divergence report.

The tables are tidy (one row per run and record, one column per variable), so
``pandas.read_csv(workdir + "/metrics.csv")`` gives a frame ready for groupby.

Every file is written to a temporary name and moved into place, and ``status.json`` is written last:
``{"state": "complete", "files": {name: {"bytes", "sha256"}}}``. While a run is writing (or after it was
killed) the status says ``"running"``; :func:`check_complete` and :func:`load_results` refuse such a
workdir, or one whose files no longer match the status, with a one-line message naming the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from jaxopt_lab.engine.checkpoint import atomic_write, read_json
from jaxopt_lab.engine.sweep import SweepResult

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _grid_points(res: SweepResult):
  for g in np.ndindex(res.grid_shape):
    yield g, {name: float(axis[i]) for (name, axis), i in zip(res.grid.items(), g)}


def write_runs(res: SweepResult, path: str) -> None:
  """One row per run: seed, hyperparameters, ``diverged_at`` (-1 if finite)."""
  rows = res.runs()
  with atomic_write(path, newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)


def write_metrics(res: SweepResult, path: str) -> None:
  """Tidy table: seed, hyperparameters, step, then one column per metric."""
  names = sorted(res.metrics)
  hp_names = list(res.grid) + list(res.fixed)
  with atomic_write(path, newline="") as f:
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
  """Writes :func:`summarize`'s rows as a CSV table."""
  rows = summarize(res)
  with atomic_write(path, newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)


def write_divergence(res: SweepResult, path: str) -> None:
  """JSON list of the runs that became non-finite, with the step where each did."""
  bad = [r for r in res.runs() if r["diverged_at"] >= 0]
  with atomic_write(path) as f:
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
    label = ", ".join(f"{k}={v:g}" for k, v in point.items()) or "all runs"
    if (~ok).any():  # diverged seeds are dropped from the curve but named in the legend
      first = int(res.diverged_at[(slice(None), *g)][~ok].min())
      note = (f"diverged at step {first}" if not ok.any() else
              f"{int((~ok).sum())}/{ok.size} diverged, first at step {first}")
      if not vals.size:
        ax.plot([], [], ls="none", marker="x", color="k", label=f"{label}: {note}")
        continue
      label = f"{label} ({note})"
    lo, med, hi = np.quantile(vals, [0.05, 0.5, 0.95], axis=0)
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
    if ax.lines:  # the empty markers naming each grid point's divergence step
      ax.legend(fontsize=7, loc="lower center")
    return fig
  if log_y and positive:  # a log axis for a metric that can be <= 0 would drop points silently
    ax.set_yscale("log")
  if log_x:
    ax.set_xscale("log")
  ax.legend(fontsize=7)
  return fig


def write_all(res: SweepResult, workdir: str, plot_metrics: Sequence[str] = (),
              log_y: Sequence[str] = (), log_x: Sequence[str] = (), experiment: str = "") -> None:
  """Writes runs.csv, metrics.csv, summary.csv, divergence.json, figures/<metric>.png, then status.json.

  Each file is moved into place whole; ``status.json`` (state ``complete`` with every file's size and
  hash) is written last, so a kill at any moment leaves no workdir that :func:`check_complete` accepts
  with partial results.
  """
  mark_incomplete(workdir)
  write_runs(res, os.path.join(workdir, "runs.csv"))
  write_metrics(res, os.path.join(workdir, "metrics.csv"))
  write_summary(res, os.path.join(workdir, "summary.csv"))
  write_divergence(res, os.path.join(workdir, "divergence.json"))
  os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
  files = ["config.json", *RESULT_FILES]
  for name in plot_metrics:
    fig = plot_metric(res, name, log_y=name in log_y, log_x=name in log_x, experiment=experiment)
    with atomic_write(os.path.join(workdir, "figures", f"{name}.png"), "wb") as f:
      fig.savefig(f, format="png", dpi=120)
    files.append(f"figures/{name}.png")
  mark_complete(workdir, files)


STATUS = "status.json"
RESULT_FILES = ("runs.csv", "metrics.csv", "summary.csv", "divergence.json")


def _file_record(path: str) -> dict[str, Any]:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return {"bytes": os.path.getsize(path), "sha256": h.hexdigest()}


def mark_incomplete(workdir: str) -> None:
  """Writes ``status.json`` with state ``running``: results in ``workdir`` are not to be read."""
  with atomic_write(os.path.join(workdir, STATUS)) as f:
    json.dump({"state": "running", "pid": os.getpid()}, f)


def mark_complete(workdir: str, files: Sequence[str]) -> None:
  """Writes ``status.json`` with state ``complete`` and the size and SHA-256 of each of ``files``."""
  record = {name: _file_record(os.path.join(workdir, name)) for name in files}
  with atomic_write(os.path.join(workdir, STATUS)) as f:
    json.dump({"state": "complete", "files": record}, f, indent=1, sort_keys=True)


def check_complete(workdir: str) -> dict[str, Any]:
  """The status of a finished workdir; ``ValueError`` (one line, naming the file) if incomplete.

  Refused: no ``status.json`` (never finished, or written before statuses existed), state ``running``
  (a run is writing or was killed: rerun the launcher to finish it), a listed file missing, or one
  whose size or hash differs from the status (changed or truncated after the run).
  """
  path = os.path.join(workdir, STATUS)
  if not os.path.exists(path):
    raise ValueError(f"workdir {workdir} holds no finished results ({path} is missing); rerun the "
                     "launcher on it to finish")
  status = read_json(path, "status file")
  if not isinstance(status, dict) or status.get("state") != "complete":
    state = status.get("state") if isinstance(status, dict) else status
    raise ValueError(f"workdir {workdir} is incomplete ({path} says {state!r}: a run is writing or "
                     "was interrupted); rerun the launcher on it to finish")
  for name, rec in status.get("files", {}).items():
    file = os.path.join(workdir, name)
    if not os.path.exists(file):
      raise ValueError(f"workdir {workdir} is incomplete: {file} is missing")
    if _file_record(file) != rec:
      raise ValueError(f"workdir {workdir} is inconsistent: {file} changed after the run finished "
                       f"(expected {rec['bytes']} bytes); rerun the launcher with --restart")
  return status


def load_results(workdir: str) -> dict[str, Any]:
  """A finished workdir's results: ``config``, ``divergence`` (dicts), ``runs``, ``metrics``,
  ``summary`` (pandas DataFrames). Refuses an incomplete workdir as :func:`check_complete` does.

  Example:
    >>> r = load_results("/tmp/ms")
    >>> r["summary"].query("metric == 'error'").groupby("alpha")["mean"].last()
  """
  import pandas as pd  # pylint: disable=g-import-not-at-top  # a test/analysis extra, not a dependency
  check_complete(workdir)
  out: dict[str, Any] = {"config": read_json(os.path.join(workdir, "config.json"), "config file"),
                         "divergence": read_json(os.path.join(workdir, "divergence.json"),
                                                 "divergence file")}
  for name in ("runs", "metrics", "summary"):
    out[name] = pd.read_csv(os.path.join(workdir, f"{name}.csv"))
  return out
