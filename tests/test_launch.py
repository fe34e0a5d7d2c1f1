"""Launcher tests: every config's quick variant runs end to end; bad values fail before compiling."""

import glob
import importlib.util
import io
import json
import math
import os
import subprocess
import sys
import tempfile
from unittest import mock

import numpy as np
import pandas as pd
from absl.testing import absltest, parameterized

from launch import experiment, results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "launch", "configs", "*.py")))
CONFIGS = [c for c in CONFIGS if not os.path.basename(c).startswith("_")]


def load_config(path, variant="quick"):
  spec = importlib.util.spec_from_file_location("cfg_" + os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


class LauncherSmokeTest(parameterized.TestCase):

  @parameterized.named_parameters(*[(os.path.basename(c)[:-3], c) for c in CONFIGS])
  def test_quick_variant_runs_and_writes_tidy_results(self, path):
    config = load_config(path)
    with tempfile.TemporaryDirectory() as workdir:
      res = experiment.run_config(config, workdir)
      for name in ("config.json", "runs.csv", "metrics.csv", "summary.csv", "divergence.json"):
        self.assertTrue(os.path.exists(os.path.join(workdir, name)), name)
      self.assertNotEmpty(glob.glob(os.path.join(workdir, "figures", "*.png")))
      metrics = pd.read_csv(os.path.join(workdir, "metrics.csv"))
      n_runs = res.diverged.size
      self.assertLen(metrics, n_runs * len(res.steps))
      for name in res.metrics:
        self.assertIn(name, metrics.columns)
      summary = pd.read_csv(os.path.join(workdir, "summary.csv"))
      self.assertTrue({"mean", "sem", "q05", "q50", "q95", "n_seeds", "n_diverged"} <= set(summary.columns))
      runs = pd.read_csv(os.path.join(workdir, "runs.csv"))
      self.assertLen(runs, n_runs)


def ms_config(**problem):
  config = load_config(os.path.join(REPO, "launch", "configs", "matrix_sensing.py"))
  config.problem.update(problem)
  return config


def small_sweep(config):
  config.sweep.update(num_seeds=2, num_steps=200, record_every=50, chunk_steps=100)
  return config


class ValidationTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("rank_above_dimension", dict(problem=dict(rank=30)), r"rank = 30 must be in \[1, 20\]"),
      ("too_few_measurements", dict(problem=dict(num_measurements=10)), "cannot identify"),
      ("negative_lr", dict(hp=dict(eta=(-0.1,))), "eta must be positive"),
      ("negative_scale", dict(hp=dict(alpha=(0.1, -0.3))), r"alpha must be positive, got \[-0.3\]"),
      ("k_below_rank", dict(algorithm=dict(k=1)), "k = 1 is below the rank 2"),
      ("unknown_algorithm", dict(algorithm=dict(name="sgd")), "unknown matrix-sensing algorithm 'sgd'"),
      ("bad_dtype", dict(problem=dict(dtype="float16")), "float32 or float64"),
      ("no_seeds", dict(sweep=dict(num_seeds=0)), "num_seeds must be >= 1"),
  )
  def test_bad_value_fails_before_compiling(self, changes, message):
    config = ms_config()
    for section, values in changes.items():
      config[section].update(values)
    with tempfile.TemporaryDirectory() as workdir, \
        mock.patch("launch.experiment.sweep", side_effect=AssertionError("compiled")):
      with self.assertRaisesRegex(ValueError, message):
        experiment.run_config(config, workdir)

  @parameterized.named_parameters(
      ("nan_c", dict(network=dict(c=float("nan"))), "network.c must be a finite"),
      ("unknown_preset", dict(network=dict(preset="xp")), "xp"),
      ("zero_width", dict(network=dict(width=0)), "must be >= 1"),
  )
  def test_bad_mup_value_fails_before_compiling(self, changes, message):
    config = load_config(os.path.join(REPO, "launch", "configs", "mup.py"))
    for section, values in changes.items():
      config[section].update(values)
    with tempfile.TemporaryDirectory() as workdir, \
        mock.patch("launch.experiment.sweep", side_effect=AssertionError("compiled")):
      with self.assertRaisesRegex(ValueError, message):
        experiment.run_config(config, workdir)

  @parameterized.named_parameters(
      ("unknown_model", "quick", dict(model="resnet"), "config.model must be one of"),
      ("bad_loss", "mlp,quick", dict(mlp=dict(loss="hinge")), "config.mlp.loss must be"),
      ("too_many_images", "mlp,quick", dict(mlp=dict(n_per_class=500)), r"n_per_class must be in \[1, 174\]"),
      ("negative_decay", "mlp,quick", dict(hp=dict(lambda_feat=(-1e-3,))), "lambda_feat must be non-negative"),
  )
  def test_bad_neural_collapse_value_fails_before_compiling(self, variant, changes, message):
    config = load_config(os.path.join(REPO, "launch", "configs", "neural_collapse.py"), variant)
    for section, values in changes.items():
      if isinstance(values, dict):
        config[section].update(values)
      else:
        config[section] = values
    with tempfile.TemporaryDirectory() as workdir, \
        mock.patch("launch.experiment.sweep", side_effect=AssertionError("compiled")):
      with self.assertRaisesRegex(ValueError, message):
        experiment.run_config(config, workdir)
    with self.assertRaisesRegex(ValueError, "unknown variant"):
      load_config(os.path.join(REPO, "launch", "configs", "neural_collapse.py"), "quick,resnet")

  @parameterized.named_parameters(("mlp", "mlp,quick"), ("central_path", "full_metrics,quick"))
  def test_neural_collapse_records_nc1_to_nc4(self, variant):
    config = load_config(os.path.join(REPO, "launch", "configs", "neural_collapse.py"), variant)
    config.mlp.update(n_per_class=10, width=8)
    config.sweep.update(num_seeds=1, num_steps=20, record_every=10, chunk_steps=20)
    with tempfile.TemporaryDirectory() as workdir:
      experiment.run_config(config, workdir)
      metrics = pd.read_csv(os.path.join(workdir, "metrics.csv"))
      for name in ("nc1", "nc2_etf_w", "nc3_self_duality", "nc4_ncc_mismatch"):
        self.assertIn(name, metrics.columns)
        self.assertTrue(os.path.exists(os.path.join(workdir, "figures", f"{name}.png")), name)
      self.assertEqual(sorted(set(metrics["step"])), [10, 20])

  def test_sp_learning_rate_exponent_override(self):
    from launch.experiments import mup as mup_builder  # pylint: disable=g-import-not-at-top
    config = load_config(os.path.join(REPO, "launch", "configs", "mup.py"))
    config.network.update(preset="sp", width=64)
    config.task.num_examples = 32
    real = mup_builder.P.preset
    with mock.patch.object(mup_builder.P, "preset", side_effect=real) as spy:
      mup_builder.build(config)
      self.assertEqual(spy.call_args.kwargs["c"], None)  # the preset's own c (1 for SP under SGD)
      config.network.c = 0.0
      mup_builder.build(config)
      self.assertEqual(spy.call_args.kwargs["c"], 0.0)
      self.assertEqual(real("sp", 2, c=spy.call_args.kwargs["c"]).c, 0.0)

  def test_unwritable_workdir(self):
    with tempfile.NamedTemporaryFile() as f:  # a file where a directory should be
      with self.assertRaisesRegex(ValueError, "cannot be created"):
        experiment.run_config(ms_config(), os.path.join(f.name, "sub"))

  def test_workdir_of_another_config_is_refused_and_same_config_resumes(self):
    config = ms_config()
    config.sweep.update(num_seeds=2, num_steps=200, record_every=50, chunk_steps=100)
    with tempfile.TemporaryDirectory() as workdir:
      first = experiment.run_config(config, workdir)
      again = experiment.run_config(config, workdir)
      self.assertEqual(again.resumed_from_chunk, 2)
      self.assertTrue((first.metrics["error"] == again.metrics["error"]).all())
      before = open(os.path.join(workdir, "config.json")).read()
      config.hp.alpha = (0.2,)
      with self.assertRaisesRegex(ValueError, "holds results of a different config"):
        experiment.run_config(config, workdir)
      self.assertEqual(open(os.path.join(workdir, "config.json")).read(), before)

  def test_cli_errors_are_one_line(self):
    cfg = os.path.join(REPO, "launch", "configs", "matrix_sensing.py") + ":quick"
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    with tempfile.TemporaryDirectory() as workdir:
      for override, message in [("--config.hp.alpa=(0.1,)", 'Did you mean "alpha"'),
                                ("--config.problem.rank=30", "rank = 30 must be in")]:
        out = subprocess.run([sys.executable, "-m", "launch.main", f"--config={cfg}",
                              f"--workdir={workdir}/w", override], capture_output=True, text=True,
                             env=env, timeout=120)
        self.assertNotEqual(out.returncode, 0)
        last = out.stderr.strip().splitlines()[-1]
        self.assertIn(message, last)
        self.assertTrue(last.startswith("error: "), last)
        self.assertNotIn("Traceback", out.stderr)


class WorkdirTest(absltest.TestCase):
  """Results on disk: atomic writes, a status written last, one run per workdir."""

  TABLES = ("config.json", "runs.csv", "metrics.csv", "summary.csv", "divergence.json")

  def _worker(self, workdir, kill_at=None, **kw):
    cmd = [sys.executable, os.path.join(REPO, "tests", "launch_kill_worker.py"), workdir]
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    return subprocess.Popen(cmd + ([kill_at] if kill_at else []), env=env, text=True, **kw)

  def test_kill_during_any_write_never_leaves_loadable_partial_results(self):
    with tempfile.TemporaryDirectory() as d:
      ref_dir, workdir = os.path.join(d, "ref"), os.path.join(d, "w")
      # The reference runs in a fresh worker process too: this test process may carry global JAX
      # settings from earlier tests (under xdist), and they moved the last digit of metrics.csv.
      self.assertEqual(self._worker(ref_dir).wait(timeout=240), 0)
      ref = {n: open(os.path.join(ref_dir, n), "rb").read() for n in self.TABLES}
      # Fresh workdir: killed writing config.json, sweep.json, then metrics.csv; then it finishes.
      # Finished workdir rerun: killed writing summary.csv, then the final status; then it finishes.
      for kill_at in ("config.json:partial", "sweep.json:fsync", "metrics.csv:partial", None,
                      "summary.csv:partial", "status.json#2:replace", None):
        proc = self._worker(workdir, kill_at)
        self.assertEqual(proc.wait(timeout=240), -9 if kill_at else 0, kill_at)
        for name in self.TABLES:  # each file is absent or whole, never partly written
          path = os.path.join(workdir, name)
          if os.path.exists(path):
            self.assertEqual(open(path, "rb").read(), ref[name], f"{name} after kill at {kill_at}")
        if kill_at:
          with self.assertRaisesRegex(ValueError, r"(incomplete|no finished results).*status.json"):
            results.check_complete(workdir)
        else:
          results.check_complete(workdir)
          self.assertLen(results.load_results(workdir)["metrics"], 2 * 2 * 4)  # seeds x alpha x records
          self.assertEqual([n for n in os.listdir(workdir) if ".tmp-" in n], [])
      with open(os.path.join(workdir, "metrics.csv"), "r+b") as f:  # truncated after the fact
        f.truncate(100)
      with self.assertRaisesRegex(ValueError, r"metrics.csv changed after the run finished"):
        results.check_complete(workdir)

  def test_second_launch_exits_at_once_naming_the_first(self):
    with tempfile.TemporaryDirectory() as d:
      workdir = os.path.join(d, "w")
      first = self._worker(workdir, "sweep.json:hold", stdout=subprocess.PIPE)
      try:
        self.assertEqual(first.stdout.readline().strip(), "holding")
        with self.assertRaisesRegex(ValueError, rf"^workdir {workdir} is in use by process {first.pid}$"):
          experiment.run_config(small_sweep(ms_config()), workdir)
      finally:
        first.kill()
        first.wait()
      experiment.run_config(small_sweep(ms_config()), workdir)  # a dead holder leaves no stale lock
      results.check_complete(workdir)

  def test_bad_schedule_writes_nothing_and_corrupt_config_is_named(self):
    with tempfile.TemporaryDirectory() as d:
      workdir = os.path.join(d, "w")
      config = small_sweep(ms_config())
      config.sweep.num_steps = 210  # not a multiple of record_every
      with mock.patch.object(experiment, "builder", side_effect=AssertionError("built")), \
          self.assertRaisesRegex(ValueError, r"num_steps \(210\) and chunk_steps \(100\) must be multiples"):
        experiment.run_config(config, workdir)
      self.assertFalse(os.path.exists(workdir))
      experiment.run_config(small_sweep(ms_config()), workdir)  # the corrected rerun is not refused
      with open(os.path.join(workdir, "config.json"), "w"):
        pass  # emptied
      with self.assertRaisesRegex(ValueError, rf"config file {workdir}/config.json is not valid JSON"):
        experiment.run_config(small_sweep(ms_config()), workdir)
      with self.assertRaisesRegex(ValueError, "config.json changed after the run finished"):
        results.check_complete(workdir)
      res = experiment.run_config(small_sweep(ms_config()), workdir, restart=True)
      self.assertIsNone(res.resumed_from_chunk)
      results.check_complete(workdir)


class FigureTest(absltest.TestCase):

  def test_diverged_grid_points_are_named_in_the_legend(self):
    import numpy as np  # pylint: disable=g-import-not-at-top
    from jaxopt_lab.engine.sweep import SweepResult  # pylint: disable=g-import-not-at-top
    steps = np.array([10, 20, 30])
    diverged_at = np.array([[-1, 5, -1], [12, 7, -1]])  # seeds x alpha: all of 0.3 diverged
    res = SweepResult(seeds=np.array([0, 1]), grid={"alpha": np.array([0.1, 0.3, 0.5])}, fixed={},
                      steps=steps, metrics={"loss": np.ones((2, 3, 3))}, diverged_at=diverged_at,
                      final_state=None)
    fig = results.plot_metric(res, "loss")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    self.assertEqual(labels, ["alpha=0.1 (1/2 diverged, first at step 12)",
                              "alpha=0.3: diverged at step 5", "alpha=0.5"])

  def _sweep(self, lrs, num_steps=40):
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from jaxopt_lab.engine.sweep import sweep  # pylint: disable=g-import-not-at-top
    from tests.toy import TOY  # pylint: disable=g-import-not-at-top
    return sweep(TOY, jnp.array([1.0, 2.0]), seeds=range(3), hp={"scale": 1.0, "lr": np.asarray(lrs)},
                 num_steps=num_steps, record_every=4)

  def test_figure_names_experiment_and_band_and_uses_log_axes(self):
    from launch import results  # pylint: disable=g-import-not-at-top
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
    fig = results.plot_metric(self._sweep([0.1, 0.2]), "loss", log_y=True, log_x=True, experiment="toy")
    self.assertIsInstance(fig, Figure)
    ax = fig.axes[0]
    self.assertTrue(ax.get_title().startswith("toy: loss"))
    self.assertIn("shaded: 5-95% over 3 seeds", ax.get_title())
    self.assertEqual((ax.get_xscale(), ax.get_yscale()), ("log", "log"))
    self.assertLen(ax.lines, 2)
    signed = results.plot_metric(self._sweep([0.1]), "x0", log_y=True)  # x0 takes both signs
    self.assertEqual(signed.axes[0].get_yscale(), "linear")  # a log axis would hide half the points

  def test_all_diverged_says_so_without_warnings(self):
    import warnings  # pylint: disable=g-import-not-at-top
    from launch import results  # pylint: disable=g-import-not-at-top
    res = self._sweep([1e6], num_steps=80)  # |1 - lr * a| >> 1: the state overflows by step 80
    self.assertTrue(res.diverged.all())
    with warnings.catch_warnings():
      warnings.simplefilter("error")  # matplotlib's "No artists with labels" would raise here
      fig = results.plot_metric(res, "loss", log_y=True, experiment="toy")
      with tempfile.TemporaryDirectory() as d:
        fig.savefig(os.path.join(d, "loss.png"))
    ax = fig.axes[0]
    self.assertTrue(all(len(line.get_xdata()) == 0 for line in ax.lines))  # legend markers only
    self.assertIn("nothing to plot: all 3 runs diverged", " ".join(t.get_text() for t in ax.texts))
    self.assertIn("diverged at step", ax.get_legend().get_texts()[0].get_text())


class ReportTest(absltest.TestCase):

  def test_report_writes_table_and_decides_from_band(self):
    from launch import report  # pylint: disable=g-import-not-at-top
    from theory_checks import registry  # pylint: disable=g-import-not-at-top
    for name in ("inside", "outside", "raises", "nan"):
      self.addCleanup(registry._REGISTRY.pop, f"test.{name}", None)  # pylint: disable=protected-access
    registry.register(id="test.inside", paper="P", claim="c", predicted="1", band=(0.9, 1.1))(
        lambda preset, seed: registry.Measurement(1.0 if preset == "quick" else 5.0 + seed, {"n": 3}))
    registry.register(id="test.outside", paper="P", claim="c", predicted="1", band=(0.9, 1.1))(
        lambda preset, seed: registry.Measurement(1.2))
    registry.register(id="test.raises", paper="P", claim="c", predicted="1", band=(0.9, 1.1))(
        lambda preset, seed: 1 / 0)
    registry.register(id="test.nan", paper="P", claim="c", predicted="1", band=(-1e9, 1e9))(
        lambda preset, seed: registry.Measurement(float("nan")))
    with tempfile.TemporaryDirectory() as d, mock.patch("sys.stdout", new_callable=io.StringIO) as out:
      rows, header = report.run_report("quick", d, ["test."])
      printed = out.getvalue()
      self.assertIn(f"results in {os.path.abspath(d)}", printed)
      table = printed.splitlines()[1]
      for column in ("check", "paper", "claim", "predicted", "measured", "band", "result", "time"):
        self.assertIn(column, table)
      self.assertRegex(printed, r"test\.inside +P +c +1 +1 +\[0\.9, 1\.1\] +PASS +\d+\.\ds")
      self.assertIn("1/4 checks passed in", printed)
      self.assertGreaterEqual(header["seconds"], sum(r["seconds"] for r in rows) - 1e-3)
      verdict = {r["id"]: r["passed"] for r in rows}
      self.assertEqual(verdict, {"test.inside": True, "test.outside": False, "test.raises": False,
                                 "test.nan": False})
      self.assertEqual((header["passed"], header["total"]), (1, 4))
      saved = json.load(open(os.path.join(d, "report.json")))
      self.assertEqual(saved["checks"][0]["details"], {"n": 3})
      self.assertIn("ZeroDivisionError", saved["checks"][2]["error"])
      md = open(os.path.join(d, "report.md")).read()
      self.assertRegex(md, r"\| test\.inside \| P \| c \| 1 \| 1 \| \[0\.9, 1\.1\] \| PASS \| \d+\.\d \|")
      self.assertIn("| test.outside | P | c | 1 | 1.2 | [0.9, 1.1] | FAIL |", md)
      self.assertIn("s in total", md)
      self.assertIn("seconds", saved["checks"][0])
    listed = report.list_checks([registry.get("test.inside"), registry.get("test.outside")], width=60)
    self.assertEqual(listed.splitlines(), ["test.inside", "    P: c (predicted 1)", "test.outside",
                                           "    P: c (predicted 1)"])
    long_cells = {c: "a long claim about rates " * 8 for c in report._COLUMNS}  # pylint: disable=protected-access
    lines = report.table_lines(long_cells, report.column_widths(200))
    self.assertGreater(len(lines), 1)  # long cells wrap onto further lines, within the width
    self.assertLessEqual(max(len(l) for l in lines), 200)
    self.assertFalse(registry.run_check(registry.get("test.inside"), "full").passed)
    self.assertEqual(registry.strict_max([[1.0, 3.0], [2.0, 0.0]]), 3.0)
    self.assertEqual(registry.strict_min([2.0, -1.0]), -1.0)
    for bad in ([], [1.0, float("nan")], [float("inf")]):  # a reduction that hides a bad value fails
      self.assertTrue(math.isnan(registry.strict_max(bad)) and math.isnan(registry.strict_min(bad)))
    with self.assertRaisesRegex(ValueError, "registered twice"):
      registry.register(id="test.inside", paper="P", claim="c", predicted="1", band=(0, 1))(print)
    with self.assertRaisesRegex(TypeError, "must take \\(preset, seed\\)"):
      registry.register(id="test.noseed", paper="P", claim="c", predicted="1", band=(0, 1))(
          lambda preset: registry.Measurement(1.0))
    # Seed offsets give distinct, reproducible streams per role.
    seeds = {registry.check_seed(s, r) for s in range(3) for r in ("problem", "data")}
    self.assertEqual(len(seeds), 6)
    self.assertEqual(registry.check_seed(2, "data"), registry.check_seed(2, "data"))
    with self.assertRaisesRegex(ValueError, "^seed: expected a non-negative"):
      registry.run_check(registry.get("test.inside"), "quick", seed=-1)

  def test_report_over_seed_offsets(self):
    from launch import report  # pylint: disable=g-import-not-at-top
    from theory_checks import registry  # pylint: disable=g-import-not-at-top
    self.addCleanup(registry._REGISTRY.pop, "test.seeded", None)  # pylint: disable=protected-access
    seen = []

    def seeded(preset, seed):
      seen.append(seed)
      return registry.Measurement(0.95 + 0.05 * seed, {"seed": seed})  # offset 3 leaves the band

    registry.register(id="test.seeded", paper="P", claim="c", predicted="1", band=(0.9, 1.05))(
        seeded)
    with tempfile.TemporaryDirectory() as d, mock.patch("sys.stdout", new_callable=io.StringIO) as out:
      rows, header = report.run_report("quick", d, ["test.seeded"], seeds=4)
      self.assertEqual(seen, [0, 1, 2, 3])
      (row,) = rows
      self.assertEqual((row["passes"], row["seeds"], row["passed"]), (3, 4, False))
      self.assertAlmostEqual(row["measured"], np.median([0.95, 1.0, 1.05, 1.1]))
      self.assertEqual((row["measured_min"], row["measured_max"]), (0.95, 1.1))
      saved = json.load(open(os.path.join(d, "report.json")))["checks"][0]
      self.assertEqual([p["measured"] for p in saved["per_seed"]], [0.95, 1.0, 1.05, 1.1])
      self.assertEqual([p["details"]["seed"] for p in saved["per_seed"]], [0, 1, 2, 3])
      self.assertIn("FAIL 3/4", out.getvalue())
      self.assertEqual(header["seeds"], 4)


if __name__ == "__main__":
  absltest.main()
