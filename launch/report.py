r"""The main job: runs every registered theory check and reports which claims held.

    python -m launch.report                     # quick preset, results/ in the current directory
    python -m launch.report --preset=full --results_dir=/tmp/full --only=matrix_sensing

Prints a table (paper, claim, predicted, measured, band, pass/fail) and writes report.md, report.json
and figures/<check id>.png into the results directory. Checks run in float64 on whatever device JAX
finds. Exits non-zero if any check failed.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import jax
from absl import app, flags

_PRESET = flags.DEFINE_enum("preset", "quick", ["quick", "full"], "Sizes of the checks.")
_RESULTS = flags.DEFINE_string("results_dir", "results", "Where report.md/json and figures go.")
_ONLY = flags.DEFINE_list("only", [], "Run only checks whose id contains one of these strings.")


def _fmt(x: float) -> str:
  return "nan" if x != x else f"{x:.4g}"


def _band(band) -> str:
  return f"[{_fmt(band[0])}, {_fmt(band[1])}]"


def render_markdown(rows: list[dict], header: dict) -> str:
  """The report as a Markdown table with one row per check."""
  lines = [f"# jaxopt_lab theory-check report ({header['preset']} preset)", "",
           f"{header['passed']}/{header['total']} checks passed on {header['device']} "
           f"(jax {header['jax']}, {header['seconds']:.1f} s).", "",
           "| check | paper | claim | predicted | measured | band | result |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    verdict = "PASS" if r["passed"] else ("ERROR" if r["error"] else "FAIL")
    lines.append(f"| {r['id']} | {r['paper']} | {r['claim']} | {r['predicted']} | "
                 f"{_fmt(r['measured'])} | {_band(r['band'])} | {verdict} |")
  errors = [r for r in rows if r["error"]]
  if errors:
    lines += ["", "## Errors", ""] + [f"- {r['id']}: {r['error']}" for r in errors]
  return "\n".join(lines) + "\n"


def run_report(preset: str, results_dir: str, only: list[str]) -> tuple[list[dict], dict]:
  """Runs the selected checks, writes report.md/json and figures; returns the rows and header."""
  jax.config.update("jax_enable_x64", True)
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import theory_checks  # pylint: disable=g-import-not-at-top

  checks = theory_checks.load_all()
  if only:
    checks = [c for c in checks if any(s in c.id for s in only)]
    if not checks:
      raise app.UsageError(f"--only={only} matches no check; known: {[c.id for c in theory_checks.all_checks()]}")
  os.makedirs(os.path.join(results_dir, "figures"), exist_ok=True)
  rows, t0 = [], time.perf_counter()
  print(f"{'check':58s} {'measured':>11s} {'band':>22s}  result  time", flush=True)
  for check in checks:
    res = theory_checks.run_check(check, preset)
    row = res.row()
    if res.figure is not None:
      path = os.path.join("figures", f"{check.id}.png")
      res.figure.savefig(os.path.join(results_dir, path), dpi=110)
      plt.close(res.figure)
      row["figure"] = path
    rows.append(row)
    verdict = "PASS" if res.passed else ("ERROR" if res.error else "FAIL")
    print(f"{check.id:58s} {_fmt(res.measured):>11s} {_band(check.band):>22s}  {verdict:6s} "
          f"{res.seconds:5.1f}s", flush=True)
    if res.error:
      print(f"    {res.error}", flush=True)
  dev = jax.devices()[0]
  header = {"preset": preset, "passed": sum(r["passed"] for r in rows), "total": len(rows),
            "device": f"{len(jax.devices())} x {dev.device_kind} ({dev.platform})",
            "host": platform.node(), "jax": jax.__version__,
            "seconds": time.perf_counter() - t0}
  with open(os.path.join(results_dir, "report.json"), "w") as f:
    json.dump({"header": header, "checks": rows}, f, indent=1)
  with open(os.path.join(results_dir, "report.md"), "w") as f:
    f.write(render_markdown(rows, header))
  print(f"\n{header['passed']}/{header['total']} checks passed ({header['seconds']:.1f} s); "
        f"report in {os.path.abspath(results_dir)}/report.md")
  return rows, header


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  _, header = run_report(_PRESET.value, _RESULTS.value, _ONLY.value)
  sys.exit(0 if header["passed"] == header["total"] else 1)


if __name__ == "__main__":
  app.run(main)
