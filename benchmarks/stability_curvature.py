r"""Cost of curvature: HVP vs gradient on an MLP, and a traced training sweep with vs without curvature.

    python -m benchmarks.stability_curvature                  # CPU sizes
    python -m benchmarks.stability_curvature --preset=tiny    # smoke test of the script itself

1. HVP / gradient: a tanh MLP on scikit-learn's digits (full batch): ``jax.grad`` against the
   forward-over-reverse HVP (``jvp`` of ``grad``), reverse-over-reverse (``grad`` of ``<grad, v>``), and
   :func:`jaxopt_lab.stability.curvature.hessian_operator` applied to 10 vectors under ``vmap``,
   and 100-probe Hutchinson (one vmapped batch of probes).
2. A sweep of ``seeds x learning rates`` runs (``jit(vmap(run))``, what the engine's sweep compiles)
   on the diagonal linear network (d = 200, n = 60), GD and SGD (B = 1), timed with sharpness
   (warm-started power iteration) and the Gauss-Newton trace every 10 steps, without any curvature,
   and with curvature at every step (what a ``lax.cond`` turned ``select`` under ``vmap`` would pay).
Prints JSON lines (benchmarks.harness): the machine and its roofline, each timing, and the ratios.

Roofline: the part-1 timings carry XLA's cost analysis of the jitted function (the one-at-a-time
Hutchinson: 100 times one forward-over-reverse HVP, since XLA counts its loop body once). At the CPU
sizes (256-wide tanh MLP, 1000 examples) a gradient is a chain of 1000 x 256 x 256 GEMMs plus tanh,
a few hundred MFLOP: milliseconds, so dispatch and the unfused elementwise tanh/derivative passes
take a visible share. The part-2 sweep timings carry no cost: a measurement sits in a conditional
taken every ``every`` steps, and XLA's cost analysis counts a conditional's branch (and a scan's
body) once whatever the trip count, so its count would be wrong by the step count; what part 2
measures is the slowdown against no curvature, which the roofline does not bound.

Measured (issue 17, load ~4, CPU preset): gradient 78%, one HVP (either order) 81-82%, 10 vmapped
HVPs 51%, 100-probe Hutchinson vmapped at once 42% but one probe at a time ~100% (the peak was
measured under more load than that entry): vmapping the probes turns every weight GEMM into a
batched GEMM with a transposed operand, which XLA:CPU runs well below the plain GEMM rate; that is
why :func:`jaxopt_lab.stability.curvature.hutchinson_trace` takes ``batch_size`` and the
PyHessian benchmark uses 1.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

from benchmarks.harness import Bench, xla_cost
from jaxopt_lab.engine import run
from jaxopt_lab.stability import curvature, models, training

PRESETS = {
    "cpu": dict(n=1000, widths=(64, 256, 256, 10), seeds=64, etas=8, steps=1000, every=10),
    "tiny": dict(n=100, widths=(64, 16, 10), seeds=4, etas=2, steps=20, every=10),
}


def hvp_costs(bench: Bench, cfg: dict, dtype) -> None:
  data = models.digits_data(n_train=cfg["n"], n_test=0, dtype=dtype)
  model = models.tanh_mlp(cfg["widths"])
  params = model.init(jax.random.key(0), dtype)
  loss = training.loss_fn(model, data.x, data.y)
  d = sum(x.size for x in jax.tree.leaves(params))
  v = jax.tree.map(jnp.ones_like, params)
  bench.note(part="hvp", params=int(d), examples=cfg["n"], widths=list(cfg["widths"]))

  grad = jax.jit(jax.grad(loss))
  fwd_rev = jax.jit(lambda p, v: curvature.hvp(loss, p, v))
  rev_rev = jax.jit(jax.grad(lambda p, v: sum(
      jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(jax.grad(loss)(p)), jax.tree.leaves(v)))))

  @jax.jit
  def operator_10(p, vs):  # 10 products, vmapped over the vectors
    matvec, _ = curvature.hessian_operator(loss, p)
    return jax.vmap(matvec)(vs)

  vs = jax.random.normal(jax.random.key(1), (10, d), dtype)
  peak = str(jnp.dtype(dtype))
  c_fr = xla_cost(fwd_rev, params, v, peak=peak)
  t_grad = bench.time("grad", grad, params, repeats=20, cost=xla_cost(grad, params, peak=peak))
  t_fr = bench.time("hvp forward-over-reverse", fwd_rev, params, v, repeats=20, cost=c_fr)
  t_rr = bench.time("hvp reverse-over-reverse", rev_rev, params, v, repeats=20,
                    cost=xla_cost(rev_rev, params, v, peak=peak))
  t_op = bench.time("10 hvps vmapped (hessian_operator)", operator_10, params, vs, repeats=10,
                    cost=xla_cost(operator_10, params, vs, peak=peak))
  hutch = jax.jit(functools.partial(curvature.hutchinson_trace, loss, num_probes=100))
  t_h = bench.time("hutchinson 100 probes", hutch, params, jax.random.key(2), repeats=5,
                   cost=xla_cost(hutch, params, jax.random.key(2), peak=peak))
  hutch1 = jax.jit(functools.partial(curvature.hutchinson_trace, loss, num_probes=100, batch_size=1))
  t_h1 = bench.time("hutchinson 100 probes, one at a time", hutch1, params, jax.random.key(2),
                    repeats=5, cost=c_fr * 100)
  bench.note(part="hvp", hvp_fwd_rev_over_grad=t_fr.median / t_grad.median,
             hvp_rev_rev_over_grad=t_rr.median / t_grad.median,
             vmapped_hvp_over_grad=t_op.median / 10 / t_grad.median,
             hutchinson_100_over_grad=t_h.median / t_grad.median,
             hutchinson_100_one_at_a_time_over_grad=t_h1.median / t_grad.median)


def traced_sweep(bench: Bench, cfg: dict, dtype) -> None:
  data = models.sparse_regression_data(jax.random.key(0), d=200, n=60, sparsity=3, n_test=60,
                                       dtype=dtype)
  model = models.diagonal_net(200)
  seeds, etas = cfg["seeds"], cfg["etas"]
  keys = jax.random.split(jax.random.key(0), seeds * etas)
  eta = jnp.tile(jnp.geomspace(0.005, 0.04, etas, dtype=dtype), seeds)
  steps, every = cfg["steps"], cfg["every"]
  base = dict(gn_trace=False, power_iters=0)
  variants = {
      # The baseline measures loss, test loss and norms every `every` steps, like the others.
      "no curvature": training.Monitor(every=every, **base),
      f"sharpness every {every} (3 warm-started products)": training.Monitor(
          every=every, gn_trace=False, power_iters=3),
      f"sharpness + exact tr G every {every}": training.Monitor(every=every, power_iters=3),
      "sharpness every step": training.Monitor(every=1, gn_trace=False, power_iters=3),
  }
  bench.note(part="sweep", runs=seeds * etas, seeds=seeds, learning_rates=etas, steps=steps,
             model="diagonal net d=200 n=60", dtype=str(jnp.dtype(dtype)))
  for alg_name in ("gd", "sgd_b1"):
    timings = {}
    for label, mon in variants.items():
      alg = training.gd(model, mon) if alg_name == "gd" else training.sgd(model, 1, monitor=mon)
      f = jax.jit(jax.vmap(lambda k, e, alg=alg: run(alg, k, data, {"eta": e}, num_steps=steps,
                                                     record_every=every)[1]["loss"]))
      timings[label] = bench.time(f"{alg_name}: {label}", f, keys, eta, repeats=3)
    base = timings["no curvature"]
    for label, t in timings.items():
      if label != "no curvature":
        bench.note(part="sweep", algorithm=alg_name, variant=label,
                   slowdown_vs_no_curvature=t.median / base.median)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
  p.add_argument("--part", choices=["all", "hvp", "sweep"], default="all")
  args = p.parse_args(argv)
  if args.dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  dtype = jnp.dtype(args.dtype)
  bench = Bench("stability_curvature", roofline="tiny" if args.preset == "tiny" else "full")
  bench.note(preset=args.preset, dtype=args.dtype)
  cfg = PRESETS[args.preset]
  if args.part in ("all", "hvp"):
    hvp_costs(bench, cfg, dtype)
  if args.part in ("all", "sweep"):
    traced_sweep(bench, cfg, dtype)


if __name__ == "__main__":
  main()
