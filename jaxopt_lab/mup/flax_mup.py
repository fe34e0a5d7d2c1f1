r"""muP for your own Flax models (linen and nnx): base shapes, rescaled init and an optax transformation.

Like microsoft/mup's ``set_base_shapes``, the width dependence of every parameter tensor is read from
its shapes at a *base* width and at the *target* width: a dimension that differs is "infinite", with
width multiplier :math:`m = \text{target}/\text{base}`. With Flax's ``(..., fan_in, fan_out)`` kernel
layout (Dense, nnx.Linear, Conv; Embed is ``(vocab, features)``), a tensor is

* **input-like** when only fan-out is infinite (first-layer kernels, embeddings, every bias of a
  width-sized layer),
* **hidden** when fan-in and fan-out are both infinite,
* **output-like** when only fan-in is infinite (the readout),
* **fixed** when nothing is infinite (e.g. the readout bias).

muP in TP5's practical form (Table 3; no forward multipliers, so the model's code is unchanged):

=====================  ======================  ===========================  ===============
                        input-like              hidden                       output-like
=====================  ======================  ===========================  ===============
init (SP init times)    1                       1                            :math:`m^{-1/2}`
SGD LR multiplier       :math:`m_{out}`         :math:`m_{out} / m_{in}`     :math:`1/m_{in}`
Adam LR multiplier      1                       :math:`1/m_{in}`             :math:`1/m_{in}`
=====================  ======================  ===========================  ===============

(the SP init of a width-:math:`n` layer already has variance :math:`\propto 1/\text{fan-in}`; the
readout's becomes :math:`\propto 1/\text{fan-in}^2`). At the base width every multiplier is 1: muP is
exactly the model you had. These are microsoft/mup's MuSGD / MuAdam rules with a readout that has no
``1/width`` forward multiplier (equivalent by the abc symmetry); ``readout_zero_init`` zeroes the
readout, which TP5 recommends and which makes the last-layer coordinate check flat.

Usage (linen)::

    setup = linen_mup(lambda n: MyMLP(width=n), base_width=64, width=1024, key=key, x=x)
    tx = setup.adam(lr)        # optax.adam with muP's Adam multipliers; setup.sgd(lr) for SGD
    params = setup.variables["params"]

``setup.sgd`` / ``setup.adam`` build the whole optax chain, so the optimizer and its multiplier table
cannot disagree (microsoft/mup's MuSGD / MuAdam). ``setup.transform`` (the multipliers alone, to chain
after an optimizer of your own) exists only when the table was named with ``optimizer="sgd"`` or
``"adam"``; without it, initializing a chain that holds it raises, naming both ways.

Reference: Yang et al., "Tensor Programs V", arXiv:2203.03466 (Table 3, Section 4 and Appendix B);
Yang & Hu, arXiv:2011.14522.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_lab.mup.parametrization import scale_by_tree

KINDS = ("input", "hidden", "output", "fixed")


@dataclasses.dataclass(frozen=True)
class TensorKind:
  """How one parameter tensor scales with width (a pytree leaf, not a node).

  Attributes:
    kind: ``"input"``, ``"hidden"``, ``"output"`` or ``"fixed"``.
    fan_in_mult: target fan-in / base fan-in (1 when finite).
    fan_out_mult: target fan-out / base fan-out (1 when finite).
  """

  kind: str
  fan_in_mult: float = 1.0
  fan_out_mult: float = 1.0


def _kind(base_shape: tuple[int, ...], shape: tuple[int, ...], path: str) -> TensorKind:
  if len(base_shape) != len(shape):
    raise ValueError(f"{path}: base shape {base_shape} and target shape {shape} differ in rank")
  if any(b < 1 for b in base_shape):
    raise ValueError(f"{path}: empty base shape {base_shape}")
  mults = [s / b for s, b in zip(shape, base_shape)]
  inf = [s != b for s, b in zip(shape, base_shape)]
  if len(shape) == 0:
    return TensorKind("fixed")
  if len(shape) == 1:
    return TensorKind("input", 1.0, mults[0]) if inf[0] else TensorKind("fixed")
  if any(inf[:-2]):
    raise ValueError(f"{path}: leading dimensions {base_shape[:-2]} -> {shape[:-2]} change with width; "
                     "only the last two (fan_in, fan_out) may")
  in_inf, out_inf = inf[-2], inf[-1]
  m_in, m_out = mults[-2], mults[-1]
  if in_inf and out_inf:
    return TensorKind("hidden", m_in, m_out)
  if out_inf:
    return TensorKind("input", 1.0, m_out)
  if in_inf:
    return TensorKind("output", m_in, 1.0)
  return TensorKind("fixed")


def infer_kinds(base_params: Any, params: Any) -> Any:
  """A pytree of :class:`TensorKind` (structure of ``params``) from the base and target shapes.

  ``base_params`` may hold arrays or ``jax.ShapeDtypeStruct`` (``jax.eval_shape``); the two pytrees
  must have the same structure.

  Example:
    >>> kinds = infer_kinds(jax.eval_shape(base.init, key, x)["params"], variables["params"])

  Reference: arXiv:2203.03466, Appendix (``set_base_shapes``).
  """
  b_leaves, b_def = jax.tree.flatten_with_path(base_params)
  t_leaves, t_def = jax.tree.flatten_with_path(params)
  if b_def != t_def:
    raise ValueError("base and target parameter trees differ in structure:\n"
                     f"  base:   {b_def}\n  target: {t_def}")
  kinds = [_kind(tuple(jnp.shape(b)), tuple(jnp.shape(t)), jax.tree_util.keystr(path))
           for (path, b), (_, t) in zip(b_leaves, t_leaves)]
  return jax.tree.unflatten(t_def, kinds)


def lr_multipliers(kinds: Any, optimizer: str = "sgd") -> Any:
  """Per-tensor learning-rate multipliers (module docstring's table) for ``"sgd"`` or ``"adam"``."""
  if optimizer not in ("sgd", "adam"):
    raise ValueError(f"unknown optimizer {optimizer!r}; choose 'sgd' (SGD-like, incl. momentum) or "
                     "'adam' (Adam-like: entrywise normalized)")

  def mult(k: TensorKind) -> float:
    if k.kind == "input":
      return k.fan_out_mult if optimizer == "sgd" else 1.0
    if k.kind == "hidden":
      return k.fan_out_mult / k.fan_in_mult if optimizer == "sgd" else 1.0 / k.fan_in_mult
    if k.kind == "output":
      return 1.0 / k.fan_in_mult
    return 1.0

  return jax.tree.map(mult, kinds)


def mup_transform(kinds: Any, optimizer: str = "sgd") -> optax.GradientTransformation:
  """The optax transformation scaling each tensor's update by its muP multiplier.

  Chain it after the optimizer: ``optax.chain(optax.sgd(lr), mup_transform(kinds, "sgd"))``.
  """
  return scale_by_tree(lr_multipliers(kinds, optimizer))


def mup_init(params: Any, kinds: Any, *, readout_zero_init: bool = False) -> Any:
  r"""SP-initialized ``params`` rescaled to muP: output-like tensors times :math:`m_{in}^{-1/2}` (or 0)."""

  def rescale(k: TensorKind, p):
    if k.kind != "output":
      return p
    return jnp.zeros_like(p) if readout_zero_init else p * (k.fan_in_mult ** -0.5)

  return jax.tree.map(rescale, kinds, params)


class MupSetup(NamedTuple):
  """What :func:`linen_mup` / :func:`nnx_mup` return.

  Attributes:
    model: the target-width module (linen) or the rescaled model (nnx).
    variables: linen variables with muP params (None for nnx: the model holds them).
    transform: the multipliers for the ``optimizer`` named at setup, to chain after that optimizer
      (a transformation whose init raises if no optimizer was named).
    kinds: the inferred :class:`TensorKind` tree.
  """

  model: Any
  variables: Any
  transform: optax.GradientTransformation
  kinds: Any

  def sgd(self, learning_rate: float, momentum: float | None = None,
          nesterov: bool = False) -> optax.GradientTransformation:
    """``optax.sgd`` followed by muP's SGD multipliers (microsoft/mup's MuSGD)."""
    return optax.chain(optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov),
                       mup_transform(self.kinds, "sgd"))

  def adam(self, learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
           weight_decay: float | None = None) -> optax.GradientTransformation:
    """``optax.adam`` (``optax.adamw`` with ``weight_decay``) followed by muP's Adam multipliers
    (microsoft/mup's MuAdam; the decay is scaled with the update, as MuAdamW's)."""
    base = (optax.adam(learning_rate, b1=b1, b2=b2, eps=eps) if weight_decay is None else
            optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
    return optax.chain(base, mup_transform(self.kinds, "adam"))


def _unnamed_transform() -> optax.GradientTransformation:
  def init(params):
    del params
    raise ValueError("optimizer: this muP setup was built without optimizer='sgd' or 'adam', so "
                     "setup.transform does not know which multipliers to apply; use setup.sgd(lr) "
                     "or setup.adam(lr), or pass optimizer= to linen_mup / nnx_mup")

  def update(updates, state, params=None):
    raise ValueError("optimizer: setup.transform was built without an optimizer")

  return optax.GradientTransformation(init, update)


def _transform(kinds: Any, optimizer: str | None) -> optax.GradientTransformation:
  return _unnamed_transform() if optimizer is None else mup_transform(kinds, optimizer)


def linen_mup(make_module: Callable[[int], Any], *, base_width: int, width: int, key: jax.Array,
              x: Any, optimizer: str | None = None, readout_zero_init: bool = False) -> MupSetup:
  r"""muP for a Flax linen model: ``make_module(width)`` builds it at any width.

  The base model is only traced (``jax.eval_shape``), never initialized.

  Args:
    make_module: width -> ``nn.Module``.
    base_width, width: the base and target widths (ints >= 1).
    key: init key; x: a sample input.
    optimizer: ``"sgd"`` or ``"adam"``: the LR table of ``setup.transform``; ``None`` (default)
      leaves ``transform`` unusable, so ``setup.sgd`` / ``setup.adam`` are the only ways to train.
    readout_zero_init: zero the output-like tensors.

  Returns:
    :class:`MupSetup` (``variables["params"]`` rescaled).

  Reference: arXiv:2203.03466, Table 3.
  """
  _check_widths(base_width, width)
  base, model = make_module(base_width), make_module(width)
  base_vars = jax.eval_shape(base.init, key, x)
  variables = model.init(key, x)
  kinds = infer_kinds(base_vars["params"], variables["params"])
  params = mup_init(variables["params"], kinds, readout_zero_init=readout_zero_init)
  variables = {**variables, "params": params}
  return MupSetup(model, variables, _transform(kinds, optimizer), kinds)


def nnx_mup(make_model: Callable[..., Any], *, base_width: int, width: int, seed: int = 0,
            optimizer: str | None = None, readout_zero_init: bool = False) -> MupSetup:
  r"""muP for a Flax nnx model: ``make_model(width, rngs)`` builds it at any width.

  The base model is built abstractly (``nnx.eval_shape``); the target model's ``nnx.Param`` state is
  rescaled in place. Train with ``nnx.Optimizer(model, setup.adam(lr), wrt=nnx.Param)`` (or
  ``setup.sgd``); ``optimizer`` as in :func:`linen_mup`.

  Reference: arXiv:2203.03466, Table 3.
  """
  from flax import nnx  # pylint: disable=g-import-not-at-top

  _check_widths(base_width, width)
  base = nnx.eval_shape(lambda: make_model(base_width, nnx.Rngs(seed)))
  model = make_model(width, nnx.Rngs(seed))
  state = nnx.state(model, nnx.Param)
  kinds = infer_kinds(nnx.state(base, nnx.Param), state)
  nnx.update(model, mup_init(state, kinds, readout_zero_init=readout_zero_init))
  return MupSetup(model, None, _transform(kinds, optimizer), kinds)


def _check_widths(base_width: int, width: int) -> None:
  for name, v in (("base_width", base_width), ("width", width)):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
      raise ValueError(f"{name} must be an int >= 1, got {v!r}")


__all__ = ["KINDS", "MupSetup", "TensorKind", "infer_kinds", "linen_mup", "lr_multipliers",
           "mup_init", "mup_transform", "nnx_mup"]
