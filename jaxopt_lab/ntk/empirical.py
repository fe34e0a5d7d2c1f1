r"""Empirical (finite-width) neural tangent kernel of any model, and a fast path for :class:`MLP`.

For a model :math:`f(\theta, x) \in \mathbb{R}^O` the empirical NTK is

.. math::
    \hat\Theta_{ab}(x, x') = \sum_p \partial_{\theta_p} f_a(\theta, x)\, \partial_{\theta_p}
    f_b(\theta, x') = [J(x) J(x')^\top]_{ab},

returned averaged over the outputs, :math:`\frac1O \sum_a \hat\Theta_{aa}`, shape ``(n1, n2)``
(the default, ``output="mean"``: it tends to the per-output analytic kernel :math:`\Theta^L` of
:func:`~jaxopt_lab.ntk.analytic.mlp_kernels` whatever O, as neural-tangents' ``trace_axes=(-1,)``,
which also averages), summed (``"trace"``: tends to :math:`O\,\Theta^L`), or in full, shape
``(n1, n2, O, O)``.

Three implementations (Novak et al. 2022, arXiv:2206.08720):

- ``"jacobian"``: Jacobian contraction; per-example ``jax.jacrev`` (vmapped over the batch) then
  one ``einsum`` per parameter leaf. Memory :math:`(n_1 + n_2)\, O\, P`.
- ``"ntvp"``: NTK-vector products; for each of the :math:`n_2 O` basis cotangents :math:`e`, one
  ``jax.vjp`` (:math:`J(x')^\top e`) and one ``jax.linearize`` JVP (:math:`J(x) J(x')^\top e`),
  mapped in batches of ``batch_size``. Memory ``batch_size * P``.
- ``"structured"``: for :class:`~jaxopt_lab.ntk.networks.MLP` only, from the layer structure: with
  :math:`h^l = s_w^l W^l a^{l-1} + s_b^l b^l` and backpropagated signals
  :math:`\delta^l_a = \partial f_a / \partial h^l`,

  .. math::
      \hat\Theta_{ab}(x, x') = \sum_{l=1}^L \big( (s_w^l)^2 \langle a^{l-1}(x), a^{l-1}(x') \rangle
      + (s_b^l)^2 \big)\, \langle \delta^l_a(x), \delta^l_b(x') \rangle,

  a sum of Gram products (neural-tangents' structured derivatives, specialised to dense layers).
  Cost: one forward and :math:`O` backward passes of activations, plus :math:`n_1 n_2` inner
  products.

Every model is ``apply(params, x)`` on a pytree ``params`` with outputs of shape ``(n, ...)``
(flattened to ``(n, O)``); a flax.linen Module is used as ``empirical_ntk(module.apply, variables,
x)``. All contractions run at precision HIGHEST.

Reference: Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572), Section 4; Novak, Sohl-Dickstein &
Schoenholz 2022, "Fast Finite Width Neural Tangent Kernel" (arXiv:2206.08720).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxopt_lab.ntk.analytic import activation_fn
from jaxopt_lab.ntk.networks import MLP

HIGHEST = jax.lax.Precision.HIGHEST
Method = Literal["auto", "jacobian", "jacobian_batch", "ntvp", "structured"]
Output = Literal["mean", "trace", "full"]
ApplyFn = Callable[[Any, jax.Array], jax.Array]

#: Memory (bytes) under which ``method="auto"`` uses Jacobian contraction for a generic model.
AUTO_JACOBIAN_BYTES = 1 << 30


def _flat_outputs(apply: ApplyFn) -> ApplyFn:
  return lambda params, x: apply(params, x).reshape(x.shape[0], -1)


def _contract(j1: jax.Array, j2: jax.Array, output: Output) -> jax.Array:
  j1 = j1.reshape(j1.shape[0], j1.shape[1], -1)
  j2 = j2.reshape(j2.shape[0], j2.shape[1], -1)
  spec = "nap,map->nm" if output == "trace" else "nap,mbp->nmab"
  return jnp.einsum(spec, j1, j2, precision=HIGHEST)


def _per_example_jacobian(apply: ApplyFn, params, x):
  """d f(x_i) / d params for every example, shape (n, O, *leaf) per leaf: reverse mode on one
  example, vmapped over the batch (n backward passes of one example; ``jacrev`` of the batched
  function would run n O backward passes of the whole batch). Examples must not interact (no
  batch statistics), as for any per-example kernel."""
  one = lambda p, xi: _flat_outputs(apply)(p, xi[None])[0]
  return jax.vmap(jax.jacrev(one), in_axes=(None, 0))(params, x)


def _batch_jacobian(apply: ApplyFn, params, x):
  """``jacrev`` of the batched function: n O backward passes of the whole batch. Faster than
  :func:`_per_example_jacobian` for convolutional models on XLA:CPU (~15x measured on a small CNN),
  whose per-example batching rule turns the kernel gradient into a grouped convolution."""
  return jax.jacrev(_flat_outputs(apply))(params, x)


def _ntk_jacobian(apply: ApplyFn, params, x1, x2, output: Output,
                  per_example: bool = True) -> jax.Array:
  jacobian = _per_example_jacobian if per_example else _batch_jacobian
  jac1 = jacobian(apply, params, x1)
  jac2 = jac1 if x2 is None else jacobian(apply, params, x2)
  terms = jax.tree.leaves(jax.tree.map(lambda a, b: _contract(a, b, output), jac1, jac2))
  return functools.reduce(jnp.add, terms)


def _ntk_ntvp(apply: ApplyFn, params, x1, x2, output: Output, batch_size: int | None) -> jax.Array:
  f = _flat_outputs(apply)
  f1 = lambda p: f(p, x1)
  f2 = f1 if x2 is None else (lambda p: f(p, x2))
  out1, jvp1 = jax.linearize(f1, params)
  out2, vjp2 = jax.vjp(f2, params)
  n1, o = out1.shape
  n2 = out2.shape[0]

  def column(k):  # Theta[:, m, :, b] for k = m * o + b
    cotangent = jax.nn.one_hot(k, n2 * o, dtype=out2.dtype).reshape(n2, o)
    (g,) = vjp2(cotangent)
    col = jvp1(g)  # (n1, o)
    return col[:, k % o] if output == "trace" else col

  ks = jnp.arange(n2 * o)
  if batch_size is None or batch_size >= n2 * o:
    cols = jax.vmap(column)(ks)
  else:
    cols = jax.lax.map(column, ks, batch_size=batch_size)
  if output == "trace":
    return jnp.sum(cols.reshape(n2, o, n1), axis=1).T
  return cols.reshape(n2, o, n1, o).transpose(2, 0, 3, 1)


def _backprop_signals(net: MLP, params, hs: list[jax.Array]) -> list[jax.Array | None]:
  """delta^l = d f / d h^l of shape (n, O, n_l) for l < L; None stands for delta^L = identity."""
  phi = activation_fn(net.activation)
  dphi = lambda h: jax.jvp(phi, (h,), (jnp.ones_like(h),))[1]
  scales = net.layer_scales()
  deltas: list[jax.Array | None] = [None]
  for l in range(net.depth - 2, -1, -1):  # 0-based layer index of h^{l+1}
    w_next = scales[l + 1][0] * params[l + 1]["w"]  # (n_l, n_{l+1})
    if deltas[0] is None:
      back = jnp.broadcast_to(w_next.T[None], (hs[l].shape[0],) + w_next.T.shape)
    else:
      back = jnp.einsum("naj,ij->nai", deltas[0], w_next, precision=HIGHEST)
    deltas.insert(0, back * dphi(hs[l])[:, None, :])
  return deltas


def _ntk_structured(net: MLP, params, x1, x2, output: Output) -> jax.Array:
  phi = activation_fn(net.activation)
  hs1 = net.preactivations(params, x1)
  hs2 = hs1 if x2 is None else net.preactivations(params, x2)
  d1 = _backprop_signals(net, params, hs1)
  d2 = d1 if x2 is None else _backprop_signals(net, params, hs2)
  x2_ = x1 if x2 is None else x2
  o = net.widths[-1]
  theta = 0
  for l, (s_w, s_b) in enumerate(net.layer_scales()):
    a1 = x1 if l == 0 else phi(hs1[l - 1])
    a2 = x2_ if l == 0 else phi(hs2[l - 1])
    gram = s_w**2 * jnp.matmul(a1, a2.T, precision=HIGHEST) + s_b**2
    if d1[l] is None:  # last layer: <delta_a, delta_b> = [a == b]
      signal = jnp.asarray(o, gram.dtype) if output == "trace" else jnp.eye(o, dtype=gram.dtype)
    elif output == "trace":
      signal = jnp.einsum("nai,mai->nm", d1[l], d2[l], precision=HIGHEST)
    else:
      signal = jnp.einsum("nai,mbi->nmab", d1[l], d2[l], precision=HIGHEST)
    if output == "full":
      gram = gram[:, :, None, None]
      if d1[l] is None:
        signal = signal[None, None]
    theta = theta + gram * signal
  return theta


def _resolve(model) -> tuple[ApplyFn, MLP | None]:
  if isinstance(model, MLP):
    return model.apply, model
  owner = getattr(model, "__self__", None)
  if isinstance(owner, MLP) and getattr(model, "__func__", None) is MLP.apply:
    return model, owner
  if not callable(model):
    raise ValueError(f"model: expected an MLP or a callable apply(params, x), got {model!r}")
  return model, None


def _choose(apply: ApplyFn, net: MLP | None, params, x1, x2, output: Output,
            batch_size: int | None) -> tuple[str, int | None]:
  if net is not None:
    return "structured", batch_size
  n1 = x1.shape[0]
  n2 = n1 if x2 is None else x2.shape[0]
  out = jax.eval_shape(_flat_outputs(apply), params, x1)
  o = out.shape[1]
  leaves = jax.tree.leaves(params)
  num_params = sum(math.prod(np.shape(p)) for p in leaves)
  itemsize = max(jnp.result_type(p).itemsize for p in leaves) if leaves else 8
  jac_bytes = (n1 + (0 if x2 is None else n2)) * o * num_params * itemsize
  if (output != "full" or o == 1) and jac_bytes <= AUTO_JACOBIAN_BYTES:
    return "jacobian", batch_size
  if batch_size is None:
    batch_size = max(1, AUTO_JACOBIAN_BYTES // max(1, 2 * num_params * itemsize))
  return "ntvp", batch_size


@functools.partial(jax.jit, static_argnames=("apply", "net", "method", "output", "batch_size"))
def _empirical_jit(params, x1, x2, *, apply, net, method, output, batch_size):
  if output == "mean":
    o = jax.eval_shape(_flat_outputs(apply), params, x1).shape[1]
    return _empirical_jit(params, x1, x2, apply=apply, net=net, method=method, output="trace",
                          batch_size=batch_size) / o
  if method == "structured":
    return _ntk_structured(net, params, x1, x2, output)
  if method in ("jacobian", "jacobian_batch"):
    return _ntk_jacobian(apply, params, x1, x2, output, per_example=method == "jacobian")
  return _ntk_ntvp(apply, params, x1, x2, output, batch_size)


def empirical_ntk(
    model: MLP | ApplyFn,
    params: Any,
    x1: Float[Array, "n1 ..."],
    x2: Float[Array, "n2 ..."] | None = None,
    *,
    method: Method = "auto",
    output: Output = "mean",
    batch_size: int | None = None,
) -> Float[Array, "n1 n2"] | Float[Array, "n1 n2 o o"]:
  r"""The empirical NTK :math:`\hat\Theta(x_1, x_2) = J(x_1) J(x_2)^\top` of a model at ``params``.

  Args:
    model: an :class:`~jaxopt_lab.ntk.networks.MLP` (or its bound ``apply``), or any
      ``apply(params, x)`` returning outputs of shape ``(n, ...)`` (e.g. a flax ``module.apply``).
    params: the parameter pytree (for flax, the variables dict given to ``module.apply``; every leaf
      is differentiated).
    x1: inputs, batch axis first.
    x2: second inputs, or ``None`` for the kernel of ``x1`` with itself.
    method: ``"jacobian"`` (per-example Jacobians, vmapped: fastest for dense models),
      ``"jacobian_batch"`` (``jacrev`` of the batched function: faster for convolutional models on
      CPU), ``"ntvp"``, ``"structured"`` (MLP only) or ``"auto"``: structured for an
      MLP; otherwise Jacobian contraction when the Jacobians fit in :data:`AUTO_JACOBIAN_BYTES` and
      the output is traced or scalar (its cost :math:`n_1 n_2 O P` then equals the NTK-vector
      products' and it runs as one matmul), else NTK-vector products in memory-bounded batches.
    output: ``"mean"`` (shape ``(n1, n2)``, averaged over the output diagonal: the convention of
      the analytic kernels and of neural-tangents' ``trace_axes``), ``"trace"`` (summed) or
      ``"full"`` (shape ``(n1, n2, O, O)``).
    batch_size: for ``"ntvp"``, cotangents per batch (``None``: all at once).

  Returns:
    The kernel, in the dtype of the model's outputs.

  Example:
    >>> net = MLP((784, 512, 512, 10))
    >>> theta = empirical_ntk(net, net.init(jax.random.key(0)), x, method="auto")  # structured

  Reference: Jacot et al. 2018 (arXiv:1806.07572), Section 4; Novak et al. 2022 (arXiv:2206.08720).
  """
  if method not in ("auto", "jacobian", "jacobian_batch", "ntvp", "structured"):
    raise ValueError("method: expected 'auto', 'jacobian', 'jacobian_batch', 'ntvp' or "
                     f"'structured', got {method!r}")
  if output not in ("mean", "trace", "full"):
    raise ValueError(f"output: expected 'mean', 'trace' or 'full', got {output!r}")
  if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
    raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size!r}")
  apply, net = _resolve(model)
  if method == "structured" and net is None:
    raise ValueError("method: 'structured' needs a jaxopt_lab.ntk.networks.MLP model")
  for name, x in (("x1", x1), ("x2", x2)):
    if x is not None and (np.ndim(x) < 1 or np.shape(x)[0] == 0):
      raise ValueError(f"{name}: expected a non-empty batch, got shape {np.shape(x)}")
  if x2 is not None and np.shape(x1)[1:] != np.shape(x2)[1:]:
    raise ValueError(f"x2: example shape {np.shape(x2)[1:]} does not match x1's {np.shape(x1)[1:]}")
  if method == "auto":
    method, batch_size = _choose(apply, net, params, x1, x2, output, batch_size)
  return _empirical_jit(params, x1, x2, apply=apply, net=net, method=method, output=output,
                        batch_size=batch_size)
