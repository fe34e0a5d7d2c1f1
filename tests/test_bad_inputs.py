"""Catalogue of bad inputs: each one, through the launcher or the Python API, is one clear error line.

Every row is a user mistake and the text its one-line error must contain. A launcher row runs
``python -m launch.main`` in process (flags reset between rows, the sweep replaced by a stub that fails
the row if it is reached, so nothing compiles); an API row calls the library. A row is *clear* when it
raises the expected one-line ``ValueError`` (or, on the command line, exits with one ``error: ...``
line and no traceback), a *traceback* when anything else is raised, and *silent* when it returns (or
the launcher reaches the sweep). ``python -m tests.test_bad_inputs --counts`` prints the tally.
A few rows are values the library defines rather than refuses (``DEFINED``): they must return it.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from absl.testing import absltest

from jaxopt_lab.engine import checkpoint as ckpt
from jaxopt_lab.engine.sweep import sweep
from jaxopt_lab.matrix_sensing import asymmetric_gd, make_problem, symmetric_gd
from jaxopt_lab.mup import transfer
from jaxopt_lab.neural_collapse import flows as nc_flows
from jaxopt_lab.neural_collapse import models as nc_models
from jaxopt_lab.stability import linear_stability as ls
from launch import main as launcher
from launch import results
from tests.toy import TOY

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(REPO, "launch", "configs")
MS, MUP, NC, STAB, NTK = (os.path.join(CFG, f"{n}.py") for n in
                          ("matrix_sensing", "mup", "neural_collapse", "stability", "ntk"))
Q = ":quick"

# (name, launcher arguments after --config=... (the workdir is added), text of the error line)
LAUNCHER = [
    # flags, config files, variants, overrides
    ("unknown_variant", [f"--config={MS}:nope"], "unknown variant 'nope'"),
    ("missing_config_file", [f"--config={CFG}/missing.py"], "No such file or directory"),
    ("config_file_syntax_error", ["--config=@SYNTAX"], "does not parse: invalid syntax"),
    ("config_file_without_get_config", ["--config=@NOGET"], "defines no get_config"),
    ("no_config_flag", [], "--config must have a value"),
    ("unknown_flag", [f"--config={MS}{Q}", "--bogus=1"], "Unknown command line flag 'bogus'"),
    ("misspelt_override", [f"--config={MS}{Q}", "--config.hp.alpa=(0.1,)"], 'Did you mean "alpha"'),
    ("new_field_override", [f"--config={MS}{Q}", "--config.hp.momentum=0.9"], "momentum"),
    ("override_not_int", [f"--config={MS}{Q}", "--config.problem.rank=abc"], "invalid literal for int"),
    ("override_fractional_rank", [f"--config={MS}{Q}", "--config.problem.rank=2.5"],
     "invalid literal for int"),
    ("override_section_as_number", [f"--config={MS}{Q}", "--config.hp=3"], "is not a dict"),
    ("override_unclosed_tuple", [f"--config={MS}{Q}", "--config.hp.alpha=(0.1"],
     "config.hp.alpha must hold finite numbers"),
    ("override_empty_tuple", [f"--config={MS}{Q}", "--config.hp.alpha=()"], "config.hp.alpha is empty"),
    ("override_inf_hp", [f"--config={MS}{Q}", "--config.hp.eta=(inf,)"], "must hold finite numbers"),
    ("override_string_hp", [f"--config={MS}{Q}", "--config.hp.eta=fast"], "must hold finite numbers"),
    ("extra_positional_argument", [f"--config={MS}{Q}", "extra"], "unexpected arguments"),
    # the sweep: seeds and schedule
    ("no_seeds", [f"--config={MS}{Q}", "--config.sweep.num_seeds=0"], "num_seeds must be >= 1"),
    ("negative_first_seed", [f"--config={MS}{Q}", "--config.sweep.first_seed=-1"],
     "first_seed must be >= 0"),
    ("seed_beyond_key_space", [f"--config={MS}{Q}", "--config.sweep.first_seed=2147483647"],
     r"must lie in [0, 2**31 - 1]"),
    ("huge_seed", [f"--config={MS}{Q}", "--config.sweep.first_seed=4294967296"], "must lie in [0, 2**31"),
    ("steps_not_multiple", [f"--config={MS}{Q}", "--config.sweep.num_steps=2010"],
     "must be multiples of record_every (50)"),
    ("zero_record_every", [f"--config={MS}{Q}", "--config.sweep.record_every=0"],
     "record_every must be >= 1"),
    ("zero_steps", [f"--config={MS}{Q}", "--config.sweep.num_steps=0"], "num_steps must be >= 1"),
    ("negative_chunk", [f"--config={MS}{Q}", "--config.sweep.chunk_steps=-5"], "chunk_steps must be >= 0"),
    ("chunk_not_multiple", [f"--config={MS}{Q}", "--config.sweep.chunk_steps=30"],
     "must be multiples of record_every"),
    # matrix sensing
    ("ms_rank_above_n", [f"--config={MS}{Q}", "--config.problem.rank=30"], "rank = 30 must be in [1, 20]"),
    ("ms_rank_zero", [f"--config={MS}{Q}", "--config.problem.rank=0"], "rank = 0 must be in"),
    ("ms_too_few_measurements", [f"--config={MS}{Q}", "--config.problem.num_measurements=10"],
     "cannot identify"),
    ("ms_kappa_below_one", [f"--config={MS}{Q}", "--config.problem.kappa=0.5"], "kappa"),
    ("ms_kappa_inf", [f"--config={MS}{Q}", "--config.problem.kappa=inf"], "kappa must be a finite number"),
    ("ms_negative_noise", [f"--config={MS}{Q}", "--config.problem.noise=-1.0"], "noise must be >= 0"),
    ("ms_noise_without_measurements", [f"--config={MS}{Q}", "--config.problem.num_measurements=0",
                                       "--config.problem.noise=0.1"], "noise > 0 needs num_measurements"),
    ("ms_bad_dtype", [f"--config={MS}{Q}", "--config.problem.dtype=float16"], "float32 or float64"),
    ("ms_unknown_algorithm", [f"--config={MS}{Q}", "--config.algorithm.name=sgd"],
     "unknown matrix-sensing algorithm 'sgd'"),
    ("ms_k_below_rank", [f"--config={MS}{Q}", "--config.algorithm.k=1"], "k = 1 is below the rank 2"),
    ("ms_k_above_n", [f"--config={MS}{Q}", "--config.algorithm.k=25"], "exceeds the matrix dimension 20"),
    ("ms_negative_eta", [f"--config={MS}{Q}", "--config.hp.eta=(-0.1,)"], "eta must be positive"),
    ("ms_negative_alpha", [f"--config={MS}{Q}", "--config.hp.alpha=(0.1,-0.3)"],
     "alpha must be positive, got [-0.3]"),
    ("ms_symmetric_gd_asymmetric_problem", [f"--config={MS}{Q}", "--config.problem.symmetric=False"],
     "symmetric_gd fits X X^T"),
    ("ms_zero_size", [f"--config={MS}{Q}", "--config.problem.n1=0"], "must be in [1, 0]"),
    # muP
    ("mup_negative_examples", [f"--config={MUP}{Q}", "--config.task.num_examples=-10"],
     "num_examples must be in [0, 1797]"),
    ("mup_too_many_examples", [f"--config={MUP}{Q}", "--config.task.num_examples=5000"],
     "num_examples must be in [0, 1797]"),
    ("mup_zero_width", [f"--config={MUP}{Q}", "--config.network.width=0"], "must be >= 1"),
    ("mup_unknown_preset", [f"--config={MUP}{Q}", "--config.network.preset=xp"], "unknown preset 'xp'"),
    ("mup_unknown_task", [f"--config={MUP}{Q}", "--config.task.name=mnist"], "unknown task 'mnist'"),
    ("mup_unknown_loss", [f"--config={MUP}{Q}", "--config.task.loss=hinge"], "unknown loss 'hinge'"),
    ("mup_teacher_with_xent", [f"--config={MUP}{Q}", "--config.task.name=teacher"], "use loss='mse'"),
    ("mup_batch_above_data", [f"--config={MUP}{Q}", "--config.task.batch_size=100000"],
     "exceeds the 512 training examples"),
    ("mup_negative_batch", [f"--config={MUP}{Q}", "--config.task.batch_size=-4"], "batch_size must be >= 0"),
    ("mup_zero_lr", [f"--config={MUP}{Q}", "--config.hp.lr=(0.0,)"], "lr must be positive"),
    ("mup_nan_c", [f"--config={MUP}{Q}", "--config.network.c=nan"], "network.c must be a finite"),
    ("mup_unknown_activation", [f"--config={MUP}{Q}", "--config.network.activation=swish"],
     "unknown activation 'swish'"),
    ("mup_unknown_optimizer", [f"--config={MUP}{Q}", "--config.network.optimizer=lion"], "lion"),
    # neural collapse
    ("nc_one_class", [f"--config={NC}{Q}", "--config.problem.num_classes=1"], "num_classes >= 2"),
    ("nc_d_below_k", [f"--config={NC}{Q}", "--config.problem.d=2"], "d = 2 < num_classes = 4"),
    ("nc_zero_dt", [f"--config={NC}{Q}", "--config.problem.dt=0.0"], "dt must be positive"),
    ("nc_negative_lambda_h", [f"--config={NC}{Q}", "--config.hp.lambda_H=(-0.1,)"],
     "lambda_H must be non-negative"),
    ("nc_zero_lambda_w", [f"--config={NC}{Q}", "--config.hp.lambda_W=(0.0,)"], "lambda_W must be positive"),
    ("nc_no_samples", [f"--config={NC}{Q}", "--config.problem.n=0"], "n >= 1 samples per class"),
    ("nc_negative_noise", [f"--config={NC}{Q}", "--config.problem.noise=-1.0"], "noise"),
    ("nc_nan_mean_scale", [f"--config={NC}{Q}", "--config.problem.mean_scale=nan"], "mean_scale"),
    # stability
    ("stab_unknown_model", [f"--config={STAB}{Q}", "--config.model.name=resnet"], "unknown model"),
    ("stab_unknown_algorithm", [f"--config={STAB}{Q}", "--config.algorithm.name=adam"],
     "unknown algorithm config.algorithm.name = 'adam'"),
    ("stab_zero_batch", [f"--config={STAB}{Q}", "--config.algorithm.batch_size=0"],
     "batch_size = 0 must be in [1, n = 60]"),
    ("stab_unknown_sampling", [f"--config={STAB}{Q}", "--config.algorithm.sampling=foo"],
     "unknown config.algorithm.sampling"),
    ("stab_no_data", [f"--config={STAB}{Q}", "--config.data.n=0"], "config.data.n (training examples)"),
    ("stab_zero_eta", [f"--config={STAB}{Q}", "--config.hp.eta=(0.0,)"], "eta must be positive"),
    ("stab_negative_probes", [f"--config={STAB}{Q}", "--config.monitor.power_iters=-1"],
     "power_iters must be >= 0"),
    ("stab_bad_dtype", [f"--config={STAB}{Q}", "--config.data.dtype=bfloat16"], "float32 or float64"),
    ("stab_negative_clip", [f"--config={STAB}{Q}", "--config.algorithm.clip=-1.0"], "clip must be >= 0"),
    # NTK
    ("ntk_zero_width", [f"--config={NTK}{Q}", "--config.network.width=0"], "network.width must be"),
    ("ntk_no_hidden_layer", [f"--config={NTK}{Q}", "--config.network.depth=1"], "network.depth must be"),
    ("ntk_unknown_activation", [f"--config={NTK}{Q}", "--config.network.activation=foo"],
     "network.activation must be one of"),
    ("ntk_unknown_task", [f"--config={NTK}{Q}", "--config.task.name=mnist"], "task.name must be one of"),
    ("ntk_zero_sigma_w", [f"--config={NTK}{Q}", "--config.network.sigma_w=0.0"], "sigma_w must be"),
    ("ntk_too_many_pcs", [f"--config={NTK}{Q}", "--config.measure.num_pcs=500"], "num_pcs must be"),
    ("ntk_negative_lr", [f"--config={NTK}{Q}", "--config.hp.lr=(-1.0,)"], "lr must be positive"),
    # workdirs
    ("workdir_is_a_file", [f"--config={MS}{Q}", "@WORKDIR_FILE"], "cannot be created"),
    ("workdir_in_use", [f"--config={MS}{Q}", "@WORKDIR_LOCKED"], "is in use by process"),
    ("workdir_of_other_config", [f"--config={MS}{Q}", "@WORKDIR_OTHER"],
     "holds results of a different config"),
    ("workdir_config_emptied", [f"--config={MS}{Q}", "@WORKDIR_EMPTY_CONFIG"],
     "config.json is not valid JSON"),
    ("workdir_sweep_json_emptied", [f"--config={MS}{Q}", "@WORKDIR_EMPTY_SWEEP_JSON", "@REAL_SWEEP"],
     "sweep.json is not valid JSON"),
]


def _problem(n=10, rank=2, **kw):
  return make_problem(jax.random.key(0), n1=n, rank=rank, **kw)


def _sweep(alg=None, problem=None, **kw):
  args = dict(seeds=[0], hp={"eta": 0.1, "alpha": 0.1}, num_steps=2, on_chunk=None)
  args.update(kw)
  return sweep(alg or symmetric_gd(2), _problem() if problem is None else problem, **args)


def _toy(**kw):
  args = dict(seeds=[0, 1], hp={"lr": 0.1, "scale": 1.0}, num_steps=4, on_chunk=None)
  args.update(kw)
  return sweep(TOY, jnp.array([1.0, 2.0]), **args)


def _mismatched_checkpoint():
  d = tempfile.mkdtemp()
  _toy(checkpoint_dir=d)
  return sweep(TOY, jnp.array([1.0, 3.0]), seeds=[0, 1], hp={"lr": 0.1, "scale": 1.0}, num_steps=4,
               on_chunk=None, checkpoint_dir=d)


def _emptied_sweep_json():
  d = tempfile.mkdtemp()
  _toy(checkpoint_dir=d)
  open(os.path.join(d, "sweep.json"), "w").close()
  return _toy(checkpoint_dir=d)


def _locked_checkpoint_dir():
  d = tempfile.mkdtemp()
  with ckpt.DirectoryLock(d):
    return _toy(checkpoint_dir=d)


def _status(state):
  d = tempfile.mkdtemp()
  if state is not None:
    with open(os.path.join(d, results.STATUS), "w") as f:
      json.dump({"state": state}, f)
  return results.check_complete(d)


def _with_nan(p):
  return p._replace(m_star=p.m_star.at[0, 1].set(jnp.nan))


GRADS = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])

# (name, callable, text of the ValueError)
API: list[tuple[str, Callable[[], object], str]] = [
    # make_problem
    ("make_problem_fractional_rank", lambda: _problem(rank=2.5), "rank must be an int, got 2.5"),
    ("make_problem_float_size", lambda: _problem(n=10.0), "n1 must be an int"),
    ("make_problem_kappa_inf", lambda: _problem(kappa=math.inf), "kappa must be a finite number"),
    ("make_problem_kappa_nan", lambda: _problem(kappa=math.nan), "kappa must be a finite number"),
    ("make_problem_kappa_below_one", lambda: _problem(kappa=0.5), "kappa"),
    ("make_problem_rank_above_n", lambda: _problem(rank=11), "rank 11 exceeds"),
    ("make_problem_zero_rank", lambda: _problem(rank=0), "rank must be >= 1"),
    ("make_problem_zero_size", lambda: _problem(n=0, rank=1), "must be positive"),
    ("make_problem_negative_noise", lambda: _problem(num_measurements=300, noise=-1.0), "noise must be >= 0"),
    ("make_problem_nan_noise", lambda: _problem(num_measurements=300, noise=math.nan), "noise must be a finite"),
    ("make_problem_noise_without_measurements", lambda: _problem(noise=0.1), "needs num_measurements"),
    ("make_problem_too_few_measurements", lambda: _problem(num_measurements=5), "cannot identify"),
    ("make_problem_fractional_measurements", lambda: _problem(num_measurements=300.5),
     "num_measurements must be an int"),
    ("make_problem_symmetric_rectangular", lambda: make_problem(jax.random.key(0), n1=10, n2=8, rank=2),
     "needs n2 == n1"),
    ("make_problem_rank1_kappa", lambda: _problem(rank=1, kappa=2.0), "rank-1 truth has kappa = 1"),
    # algorithms
    ("symmetric_gd_zero_k", lambda: symmetric_gd(0), "k must be an int >= 1"),
    ("symmetric_gd_float_k", lambda: symmetric_gd(2.0), "k must be an int >= 1"),
    ("symmetric_gd_k_above_n", lambda: _sweep(symmetric_gd(20)), "k = 20 exceeds the matrix dimension 10"),
    ("asymmetric_gd_k_above_n", lambda: _sweep(asymmetric_gd(20), _problem(symmetric=False)),
     "k = 20 exceeds the matrix dimension 10"),
    # sweep
    ("sweep_no_devices", lambda: _sweep(devices=[]), "devices must be a non-empty list"),
    ("sweep_no_seeds", lambda: _sweep(seeds=[]), "seeds must be a non-empty"),
    ("sweep_seed_beyond_key_space", lambda: _sweep(seeds=[2**31]), "seeds must lie in [0, 2**31 - 1]"),
    ("sweep_negative_seed", lambda: _sweep(seeds=[-1]), "seeds must lie in [0, 2**31 - 1]"),
    ("sweep_fractional_seed", lambda: _sweep(seeds=[0.5]), "seeds must be a non-empty 1-D list of integers"),
    ("sweep_duplicate_seeds", lambda: _sweep(seeds=[3, 3]), "seeds must be distinct"),
    ("sweep_unknown_hp", lambda: _sweep(hp={"eta": 0.1, "alpha": 0.1, "lr": 1.0}),
     "unknown hyperparameter(s) ['lr']"),
    ("sweep_missing_hp", lambda: _sweep(hp={"alpha": 0.1}), "missing hyperparameter(s) ['eta']"),
    ("sweep_nan_hp", lambda: _sweep(hp={"eta": math.nan, "alpha": 0.1}), "must be finite numbers"),
    ("sweep_2d_hp", lambda: _sweep(hp={"eta": [[0.1]], "alpha": 0.1}), "scalar or a non-empty 1-D list"),
    ("sweep_zero_steps", lambda: _sweep(num_steps=0), "must be >= 1"),
    ("sweep_steps_not_multiple", lambda: _sweep(num_steps=5, record_every=2), "must be a multiple of"),
    ("sweep_chunk_not_multiple", lambda: _sweep(num_steps=4, record_every=2, chunk_steps=3),
     "chunk_steps (3) must be a positive multiple"),
    ("sweep_nan_problem", lambda: _sweep(problem=_with_nan(_problem())),
     "the problem's data .m_star holds 1 non-finite"),
    ("sweep_inf_problem", lambda: sweep(TOY, jnp.array([1.0, jnp.inf]), seeds=[0],
                                        hp={"lr": 0.1, "scale": 1.0}, num_steps=2, on_chunk=None),
     "holds 1 non-finite value"),
    ("sweep_mixed_dtypes", lambda: sweep(TOY, (jnp.ones(2, jnp.float32), jnp.ones(2, jnp.bfloat16)),
                                         seeds=[0], hp={"lr": 0.1, "scale": 1.0}, num_steps=2),
     "mixes floating dtypes"),
    ("sweep_checkpoint_dir_is_file", lambda: _toy(checkpoint_dir=tempfile.mkstemp()[1]), "cannot be created"),
    ("sweep_checkpoint_dir_locked", _locked_checkpoint_dir, "is in use by process"),
    ("sweep_checkpoint_other_problem", _mismatched_checkpoint, "differs in ['problem']"),
    ("sweep_sweep_json_emptied", _emptied_sweep_json, "sweep.json is not valid JSON"),
    # linear stability
    ("threshold_nan_gradients", lambda: ls.threshold(GRADS.at[0, 0].set(jnp.nan), 1),
     "factors hold 1 non-finite"),
    ("threshold_inf_gradients", lambda: ls.threshold(GRADS.at[1, 1].set(jnp.inf), 1),
     "factors hold 1 non-finite"),
    ("threshold_zero_batch", lambda: ls.threshold(GRADS, 0), "batch size must be an int in [1, n = 3]"),
    ("threshold_batch_above_n", lambda: ls.threshold(GRADS, 4), "batch size must be an int in [1, n = 3]"),
    ("threshold_fractional_batch", lambda: ls.threshold(GRADS, 1.5), "batch size must be an int"),
    ("threshold_unknown_method", lambda: ls.threshold(GRADS, 1, method="svd"), "method must be"),
    ("threshold_4d_factors", lambda: ls.threshold(GRADS[None, None], 1), "factors must be (n, d)"),
    ("threshold_complex_factors", lambda: ls.threshold(GRADS.astype(jnp.complex64), 1),
     "factors must be real"),
    ("threshold_dense_nan", lambda: ls.threshold_dense(np.full((2, 2, 2), np.nan), 1),
     "hessians hold 8 non-finite"),
    ("threshold_dense_bad_shape", lambda: ls.threshold_dense(np.ones((2, 2, 3)), 1),
     "hessians must have shape (n, d, d)"),
    # neural collapse
    ("central_path_negative_noise", lambda: nc_flows.central_path_algorithm(
        num_classes=4, n=10, d=10, dt=1e-3, noise=-1.0), "noise must be >= 0"),
    ("central_path_zero_dt", lambda: nc_flows.central_path_algorithm(num_classes=4, n=10, d=10, dt=0.0),
     "dt must be > 0"),
    ("central_path_one_class", lambda: nc_flows.central_path_algorithm(num_classes=1, n=10, d=10, dt=0.1),
     "num_classes must be an int >= 2"),
    ("mse_closed_form_one_class", lambda: nc_models.mse_closed_form(1, 1.0, 0.1), "num_classes must be an int >= 2"),
    ("mse_closed_form_fractional_k", lambda: nc_models.mse_closed_form(2.5, 1.0, 0.1), "num_classes must be"),
    ("mse_closed_form_negative_lambda_h", lambda: nc_models.mse_closed_form(4, 1.0, -0.1),
     "lambda_H must be > 0"),
    ("mse_closed_form_zero_lambda_h", lambda: nc_models.mse_closed_form(4, 1.0, 0.0), "lambda_H must be > 0"),
    ("mse_closed_form_nan_lambda_w", lambda: nc_models.mse_closed_form(4, math.nan, 0.1),
     "lambda_W must be finite"),
    # muP tasks
    ("digits_negative_num", lambda: transfer.digits_task(-10), "num (digits examples) must be an int in"),
    ("digits_num_above_size", lambda: transfer.digits_task(5000), "must be an int in [1, 1797]"),
    ("digits_zero_num", lambda: transfer.digits_task(0), "must be an int in [1, 1797]"),
    ("teacher_zero_num", lambda: transfer.teacher_task(jax.random.key(0), num=0), "num must be an int >= 1"),
    # readers of workdirs and checkpoints
    ("workdir_without_status", lambda: _status(None), "holds no finished results"),
    ("workdir_running", lambda: _status("running"), "is incomplete"),
    ("read_json_truncated", lambda: ckpt.read_json(_write_tmp('{"a": '), "config file"),
     "is not valid JSON"),
]

# Values the library defines instead of refusing: (name, callable, check of the returned value).
DEFINED = [
    ("threshold_integer_factors",  # exact numbers: promoted to the default float, same threshold
     lambda: float(ls.threshold(jnp.array([[1, 0], [0, 2], [1, 1]]), 1)),
     lambda v: v == float(ls.threshold(GRADS, 1))),
    ("threshold_zero_gradients",  # H = 0: every step size is stable, eta* = inf (documented)
     lambda: float(ls.threshold(jnp.zeros((3, 2)), 1)), math.isinf),
]


def _write_tmp(text):
  fd, path = tempfile.mkstemp(suffix=".json")
  with os.fdopen(fd, "w") as f:
    f.write(text)
  return path


class _ReachedSweep(Exception):
  pass


def _setup_special(args, d):
  """Replaces the @ placeholders of a launcher row by real files and workdirs under ``d``."""
  workdir, out, holders = os.path.join(d, "w"), [], []
  for a in args:
    if a == "@REAL_SWEEP":  # the error comes from the sweep's checkpointer, before it compiles
      continue
    if a == "--config=@SYNTAX":
      out.append("--config=" + _write_tmp_py(d, "def get_config(:\n"))
    elif a == "--config=@NOGET":
      out.append("--config=" + _write_tmp_py(d, "x = 1\n"))
    elif a == "@WORKDIR_FILE":
      workdir = os.path.join(_write_tmp_py(d, ""), "sub")
    elif a == "@WORKDIR_LOCKED":
      os.makedirs(workdir)
      holders.append(ckpt.DirectoryLock(workdir, "workdir"))
    elif a in ("@WORKDIR_OTHER", "@WORKDIR_EMPTY_CONFIG"):
      os.makedirs(workdir)
      with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write('{"experiment": "other"}' if a == "@WORKDIR_OTHER" else "")
    elif a == "@WORKDIR_EMPTY_SWEEP_JSON":
      os.makedirs(os.path.join(workdir, "checkpoints"))
      open(os.path.join(workdir, "checkpoints", "sweep.json"), "w").close()
    else:
      out.append(a)
  return out + [f"--workdir={workdir}"], holders


def _write_tmp_py(d, text):
  fd, path = tempfile.mkstemp(suffix=".py", dir=d)
  with os.fdopen(fd, "w") as f:
    f.write(text)
  return path


def run_launcher(args: list[str]) -> tuple[str, str]:
  """Runs ``launch.main`` in process; returns (kind, what it printed or raised)."""
  for name in [n for n in flags.FLAGS if n.startswith("config.")]:  # overrides of the previous row
    delattr(flags.FLAGS, name)
  sys.modules.pop("config_config", None)  # ml_collections re-executes a config file in this module
  flags.FLAGS.unparse_flags()
  err = io.StringIO()
  with tempfile.TemporaryDirectory() as d:
    argv, holders = _setup_special(args, d)
    try:
      stub = (contextlib.nullcontext() if "@REAL_SWEEP" in args else
              mock.patch("launch.experiment.sweep", side_effect=_ReachedSweep))
      with mock.patch.object(sys, "argv", ["launch.main", *argv]), contextlib.redirect_stderr(err), \
          stub:
        launcher.run()
      return "silent", "exited normally"
    except _ReachedSweep:
      return "silent", "reached the sweep"
    except SystemExit as e:
      text = e.code if isinstance(e.code, str) else err.getvalue().strip()
      if "Traceback" in err.getvalue() or not isinstance(e.code, str):
        return "traceback", f"exit {e.code!r}: {err.getvalue()[-300:]}"
      if "\n" in text or not text.startswith("error: "):
        return "traceback", text
      return "clear", text
    except Exception as e:  # pylint: disable=broad-except
      return "traceback", f"{type(e).__name__}: {e}"
    finally:
      for h in holders:
        h.release()


def run_api(fn: Callable[[], object]) -> tuple[str, str]:
  try:
    fn()
    return "silent", "returned"
  except ValueError as e:
    text = str(e)
    return ("clear" if "\n" not in text.strip() else "traceback"), text
  except Exception as e:  # pylint: disable=broad-except
    return "traceback", f"{type(e).__name__}: {e}"


def catalogue() -> dict[str, list[tuple[str, str, str, str]]]:
  """Runs every row; rows grouped by outcome as (surface, name, expected text, what happened)."""
  out: dict[str, list[tuple[str, str, str, str]]] = {"clear": [], "traceback": [], "silent": [],
                                                     "wrong_message": []}
  for surface, rows, runner in (("launcher", LAUNCHER, run_launcher), ("api", API, run_api)):
    for name, arg, expected in rows:
      kind, text = runner(arg)
      if kind == "clear" and expected not in text:
        kind = "wrong_message"
      out[kind].append((surface, name, expected, text))
  return out


class BadInputCatalogueTest(absltest.TestCase):

  def test_every_bad_input_is_one_clear_line(self):
    got = catalogue()
    problems = [f"{kind}: {s}/{n}: expected {e!r}, got {t!r}" for kind in ("traceback", "silent",
                                                                           "wrong_message")
                for s, n, e, t in got[kind]]
    self.assertEqual(problems, [], "\n".join(problems))
    self.assertLen(got["clear"], len(LAUNCHER) + len(API))

  def test_defined_values(self):
    for name, fn, ok in DEFINED:
      self.assertTrue(ok(fn()), name)

  def test_catalogue_can_fail(self):  # the harness itself tells a silent and a traceback row apart
    self.assertEqual(run_api(lambda: 1)[0], "silent")
    self.assertEqual(run_api(lambda: 1 / 0)[0], "traceback")
    self.assertEqual(run_launcher([f"--config={MS}{Q}"])[0], "silent")  # a valid config


if __name__ == "__main__":
  if "--counts" in sys.argv:
    res = catalogue()
    print(json.dumps({"tried": len(LAUNCHER) + len(API), "launcher": len(LAUNCHER), "api": len(API),
                      **{k: len(v) for k, v in res.items()}}))
    for kind in ("traceback", "silent", "wrong_message"):
      for row in res[kind]:
        print(kind, row)
  else:
    absltest.main()
