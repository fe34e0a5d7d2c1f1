r"""The main job: runs every registered theory check and reports which claims held.

    python -m launch.report                     # quick preset, results in ./results
    python -m launch.report --list              # the check ids (with paper and claim), then exit
    python -m launch.report --seeds=10          # every check on 10 independent seed offsets
    python -m launch.report --preset=full --results_dir=/tmp/full --only=matrix_sensing

Prints a table (check, paper, claim, predicted, measured, band, pass/fail, seconds), wrapped to the
terminal's width, one row as each check finishes, and writes report.md, report.json and
figures/<check id>.png into the results directory: ``results/`` under the current directory unless
``--results_dir`` says otherwise (its absolute path is printed first and last). Each check states the
paper's prediction and a band; the measured number must land inside the band to pass. Checks run in
float64 on whatever device JAX finds. Exits non-zero if any check failed.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import textwrap
import time

import jax
from absl import app, flags

_PRESET = flags.DEFINE_enum("preset", "quick", ["quick", "full"], "Sizes of the checks.")
_RESULTS = flags.DEFINE_string("results_dir", "results",
                               "Where report.md/json and figures go (default: ./results).")
_ONLY = flags.DEFINE_list("only", [], "Run only checks whose id contains one of these strings.")
_LIST = flags.DEFINE_bool("list", False, "Print the check ids with their paper and claim, and exit.")
_SEEDS = flags.DEFINE_integer(
    "seeds", 1, "Run each check on this many independent seed offsets (0..K-1: problem, data and "
    "run keys all change); a check passes if it passes on every offset.", lower_bound=1)

# Terminal-table columns: a share of the width left after the fixed-width columns, or a fixed width.
_FLEX = {"check": 0.25, "paper": 0.17, "claim": 0.45, "predicted": 0.13}
_MIN = {"check": 24, "paper": 18, "claim": 24, "predicted": 12}  # below these, lines run over
_FIXED = {"measured": 10, "band": 20, "result": 6, "time": 7}
_COLUMNS = ("check", "paper", "claim", "predicted", "measured", "band", "result", "time")


def _fmt(x: float) -> str:
  return "nan" if x != x else f"{x:.4g}"


def _band(band) -> str:
  return f"[{_fmt(band[0])}, {_fmt(band[1])}]"


def _verdict(row: dict) -> str:
  word = "PASS" if row["passed"] else ("ERROR" if row["error"] else "FAIL")
  return word if row.get("seeds", 1) == 1 else f"{word} {row['passes']}/{row['seeds']}"


def _measured(row: dict) -> str:
  """The measured value; over several seed offsets the median and the range."""
  if row.get("seeds", 1) == 1:
    return _fmt(row["measured"])
  return f"{_fmt(row['measured'])} [{_fmt(row['measured_min'])}, {_fmt(row['measured_max'])}]"


def column_widths(total: int, seeds: int = 1) -> dict[str, int]:
  """Widths of the terminal table's columns for a terminal ``total`` characters wide (over several
  seed offsets the measured cell holds a median and a range, the result a count)."""
  fixed = dict(_FIXED, measured=30, result=11) if seeds > 1 else _FIXED
  flexible = total - sum(fixed.values()) - 2 * (len(_COLUMNS) - 1)
  widths = {name: max(_MIN[name], int(share * flexible)) for name, share in _FLEX.items()}
  return {name: widths.get(name) or fixed[name] for name in _COLUMNS}


def table_lines(cells: dict[str, str], widths: dict[str, int]) -> list[str]:
  """One table row as text lines: each cell wrapped to its column's width, columns padded."""
  wrapped = {c: textwrap.wrap(cells[c], widths[c], break_long_words=True) or [""] for c in _COLUMNS}
  height = max(len(v) for v in wrapped.values())
  right = {"measured", "time"}
  return ["  ".join((wrapped[c][i] if i < len(wrapped[c]) else "").rjust(widths[c]) if c in right
                    else (wrapped[c][i] if i < len(wrapped[c]) else "").ljust(widths[c])
                    for c in _COLUMNS).rstrip()
          for i in range(height)]


def _cells(row: dict) -> dict[str, str]:
  return {"check": row["id"], "paper": row["paper"], "claim": row["claim"],
          "predicted": row["predicted"], "measured": _measured(row), "band": _band(row["band"]),
          "result": _verdict(row), "time": f"{row['seconds']:.1f}s"}


def render_markdown(rows: list[dict], header: dict) -> str:
  """The report as a Markdown table with one row per check."""
  lines = [f"# jaxopt_lab theory-check report ({header['preset']} preset)", "",
           f"{header['passed']}/{header['total']} checks passed on {header['device']} "
           f"(jax {header['jax']}, {header['seconds']:.1f} s in total).", "",
           "Each check measures one number (a fitted rate, slope or limit) and passes if it lands "
           "inside the band around the paper's prediction.", "",
           "| check | paper | claim | predicted | measured | band | result | seconds |",
           "|---|---|---|---|---|---|---|---|"]
  cell = lambda text: str(text).replace("|", "\\|")  # claims hold |x| norms: escape Markdown's pipe
  for r in rows:
    lines.append(f"| {r['id']} | {cell(r['paper'])} | {cell(r['claim'])} | {cell(r['predicted'])} | "
                 f"{_measured(r)} | {_band(r['band'])} | {_verdict(r)} | {r['seconds']:.1f} |")
  errors = [r for r in rows if r["error"]]
  if errors:
    lines += ["", "## Errors", ""] + [f"- {r['id']}: {r['error']}" for r in errors]
  return "\n".join(lines) + "\n"


def list_checks(checks, width: int | None = None) -> str:
  """The check ids, one block each: the id, then its paper and claim indented and wrapped."""
  width = width or shutil.get_terminal_size((120, 24)).columns
  out = []
  for c in checks:
    out.append(c.id)
    out += textwrap.wrap(f"{c.paper}: {c.claim} (predicted {c.predicted})", width,
                         initial_indent="    ", subsequent_indent="    ")
  return "\n".join(out)


def _select(only: list[str]):
  import theory_checks  # pylint: disable=g-import-not-at-top
  checks = theory_checks.load_all()
  if only:
    checks = [c for c in checks if any(s in c.id for s in only)]
    if not checks:
      raise app.UsageError(f"--only={only} matches no check; see `python -m launch.report --list`")
  return checks


def run_one(check, preset: str, results_dir: str, seeds: int = 1) -> dict:
  """Runs one check on seed offsets 0..seeds-1 and saves offset 0's figure; its result record (a
  JSON-serialisable dict).

  With several offsets the record's ``measured`` is the median over offsets (NaN if any is NaN),
  ``measured_min``/``measured_max`` the range, ``passes`` the count of passing offsets, ``passed``
  whether all passed, ``seconds`` the total, and ``per_seed`` every offset's own record.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import theory_checks  # pylint: disable=g-import-not-at-top
  results = [theory_checks.run_check(check, preset, seed) for seed in range(seeds)]
  row = results[0].row()
  if results[0].figure is not None:  # a plain matplotlib Figure: saved, nothing to close
    path = os.path.join("figures", f"{check.id}.png")
    results[0].figure.savefig(os.path.join(results_dir, path), dpi=110)
    row["figure"] = path
  if seeds == 1:
    return row
  per = [r.row() for r in results]
  values = np.array([r.measured for r in results], float)
  errors = [f"seed {r.seed}: {r.error}" for r in results if r.error]
  row.update(seeds=seeds, passes=sum(r.passed for r in results),
             passed=all(r.passed for r in results), measured=float(np.median(values)),
             measured_min=float(np.min(values)), measured_max=float(np.max(values)),
             seconds=round(sum(r.seconds for r in results), 3), error="; ".join(errors) or None,
             per_seed=[{k: p[k] for k in ("seed", "measured", "passed", "seconds", "details",
                                          "error")} for p in per])
  row.pop("details")
  return row


def run_report(preset: str, results_dir: str, only: list[str], seeds: int = 1
               ) -> tuple[list[dict], dict]:
  """Runs the selected checks (each on ``seeds`` seed offsets), writes report.md/json and figures;
  returns the rows and header."""
  jax.config.update("jax_enable_x64", True)
  checks = _select(only)
  results_dir = os.path.abspath(results_dir)
  os.makedirs(os.path.join(results_dir, "figures"), exist_ok=True)
  print(f"{len(checks)} checks, {preset} preset, {seeds} seed offset(s) each; results in "
        f"{results_dir}", flush=True)
  widths = column_widths(shutil.get_terminal_size((160, 24)).columns, seeds)
  head = table_lines({c: c for c in _COLUMNS}, widths)
  print("\n".join(head + ["-" * len(head[0])]), flush=True)
  rows, t0 = [], time.perf_counter()
  for check in checks:
    row = run_one(check, preset, results_dir, seeds)
    rows.append(row)
    print("\n".join(table_lines(_cells(row), widths)), flush=True)
    if row["error"]:
      print(textwrap.indent(textwrap.fill(row["error"], widths["check"] + widths["paper"] + 40),
                            "    "), flush=True)
  dev = jax.devices()[0]
  header = {"preset": preset, "passed": sum(r["passed"] for r in rows), "total": len(rows),
            "device": f"{len(jax.devices())} x {dev.device_kind} ({dev.platform})",
            "host": platform.node(), "jax": jax.__version__, "seeds": seeds,
            "seconds": round(time.perf_counter() - t0, 3), "results_dir": results_dir}
  with open(os.path.join(results_dir, "report.json"), "w") as f:
    json.dump({"header": header, "checks": rows}, f, indent=1)
  with open(os.path.join(results_dir, "report.md"), "w") as f:
    f.write(render_markdown(rows, header))
  print(f"\n{header['passed']}/{header['total']} checks passed in {header['seconds']:.1f} s; "
        f"report in {results_dir}/report.md (and report.json, figures/)")
  return rows, header


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # JAX probes for a TPU first and logs "Unable to initialize backend 'tpu'" at INFO on any other
  # machine: harmless, and confusing as the first line a newcomer sees.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  if _LIST.value:
    print(list_checks(_select(_ONLY.value)))
    return
  _, header = run_report(_PRESET.value, _RESULTS.value, _ONLY.value, _SEEDS.value)
  sys.exit(0 if header["passed"] == header["total"] else 1)


if __name__ == "__main__":
  app.run(main)
