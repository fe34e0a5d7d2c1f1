"""Tests of jaxopt_lab.matrix_sensing: operator, GD steps against NumPy, vmap, compiles, rebalance.

Reference: Xiong, Ding & Du, arXiv:2310.01769. Problems are tiny (n <= 8, m <= 80; one n = 4000
factor for the init scale) and share compiles; the NumPy references loop explicitly over the m
sensing matrices.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab.engine import run
from jaxopt_lab.matrix_sensing import (
    adjoint_op,
    asymmetric_gd,
    asymmetric_gd_one_step,
    gram_op,
    make_problem,
    rebalance_reconstruction,
    residual_gradient,
    sensing_op,
    symmetric_gd,
)

KEY = jax.random.key(0)


@functools.lru_cache(maxsize=None)  # problems are immutable: build each configuration once
def _problem(*, sensing=True, symmetric=True, dtype=jnp.float64, seed=0):
  # One size everywhere (n = 6, n2 = 7 if asymmetric, r = 2, m = 80, kappa = 2): one compile of
  # make_problem per (sensing, symmetric, dtype); other seeds reuse it.
  return make_problem(jax.random.key(seed), n1=6, n2=None if symmetric else 7, rank=2,
                      num_measurements=80 if sensing else None, kappa=2.0, symmetric=symmetric,
                      dtype=dtype)


def _algorithms(k):
  return {"symmetric": symmetric_gd(k), "asymmetric": asymmetric_gd(k),
          "one_step": asymmetric_gd_one_step(k)}


HP = {"alpha": 0.3, "eta": 0.1}
_rebalance = jax.jit(rebalance_reconstruction)


@jax.jit
@chex.assert_max_traces(n=1)
def _run_one_step(key, problem, hp):
  return run(asymmetric_gd_one_step(3), key, problem, hp, num_steps=6, record_every=1)


def _normal(seed, shape):
  """Test data from NumPy (cheaper than compiling jax.random for every shape)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


# ------------------------------------------------------------------------------------------------
# NumPy float64 references: explicit loops over the m sensing matrices.


def _np_ops(problem):
  a = np.asarray(problem.A, np.float64)
  m = a.shape[0]
  n1, n2 = problem.m_star.shape
  mats = [a[i].reshape(n1, n2) for i in range(m)]

  def sense(x):
    return np.array([np.sum(mats[i] * x) for i in range(m)]) / np.sqrt(m)

  def adjoint(v):
    out = np.zeros((n1, n2))
    for i in range(m):
      out += v[i] * mats[i]
    return out / np.sqrt(m)

  return sense, adjoint


def _np_symmetric_steps(problem, x, eta, steps):
  sense, adjoint = _np_ops(problem)
  y = np.asarray(problem.y, np.float64)
  for _ in range(steps):
    r = adjoint(sense(x @ x.T) - y)
    x = x - eta * 0.5 * (r + r.T) @ x
  return x


def _np_asymmetric_steps(problem, f, g, eta, steps):
  sense, adjoint = _np_ops(problem)
  y = np.asarray(problem.y, np.float64)
  for _ in range(steps):
    r = adjoint(sense(f @ g.T) - y)
    f, g = f - eta * r @ g, g - eta * r.T @ f
  return f, g


class ProblemTest(parameterized.TestCase):

  @parameterized.parameters((jnp.float32, True, True), (jnp.float64, False, True),
                            (jnp.float32, False, False), (jnp.float64, True, False))
  def test_shapes_dtypes_and_truth(self, dtype, symmetric, sensing):
    p = _problem(dtype=dtype, symmetric=symmetric, sensing=sensing)
    n1, n2 = 6, 6 if symmetric else 7
    self.assertEqual(p.m_star.shape, (n1, n2))
    self.assertEqual(p.u.shape, (n1, 2))
    self.assertEqual(p.v.shape, (n2, 2))
    for leaf in jax.tree.leaves(p):
      self.assertEqual(leaf.dtype, dtype)
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    np.testing.assert_allclose(p.sigma, [1.0, 0.5], rtol=tol)  # sigma_1 = 1, sigma_r = 1/kappa
    np.testing.assert_allclose(p.u.T @ p.u, np.eye(2), atol=tol)
    singular_values = np.linalg.svd(np.asarray(p.m_star, np.float64), compute_uv=False)
    np.testing.assert_allclose(singular_values[:3], [1.0, 0.5, 0.0], atol=10 * tol)
    if symmetric:
      np.testing.assert_allclose(p.m_star, p.m_star.T, atol=tol)
      self.assertGreaterEqual(np.linalg.eigvalsh(np.asarray(p.m_star, np.float64)).min(), -10 * tol)
    if sensing:
      self.assertEqual(p.A.shape, (80, n1 * n2))
      self.assertEqual(p.y.shape, (80,))
      np.testing.assert_allclose(p.y, sensing_op(p, p.m_star), rtol=10 * tol, atol=10 * tol)
      if symmetric:
        a = np.asarray(p.A).reshape(80, n1, n2)
        np.testing.assert_array_equal(a, np.swapaxes(a, 1, 2))
    else:
      self.assertIsNone(p.A)
      self.assertIsNone(p.y)

  def test_geometric_spacing(self):
    p = make_problem(KEY, n1=8, rank=3, kappa=9.0)
    np.testing.assert_allclose(p.sigma, [1.0, 1 / 3, 1 / 9], rtol=1e-12)

  @parameterized.parameters(True, False)
  def test_adjointness(self, symmetric):
    p = _problem(symmetric=symmetric)
    mat, v = _normal(1, p.m_star.shape), _normal(2, (80,))
    lhs = jnp.vdot(jax.jit(sensing_op)(p, mat), v)
    rhs = jnp.vdot(mat, jax.jit(adjoint_op)(p, v))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)

  @parameterized.parameters(True, False)
  def test_isometry_in_expectation(self, symmetric):
    # |A(M)|^2 / |M|_F^2 is chi^2_m / m for each operator draw: over K = 125 operators of m = 80
    # measurements the mean has std sqrt(2 / (K m)) = 0.0141; tolerance 0.07 is 5 standard
    # deviations.
    num_ops = 125
    mat = _normal(7, _problem(symmetric=symmetric).m_star.shape)
    if symmetric:
      mat = 0.5 * (mat + mat.T)  # symmetrized A_i see only sym(M): E|A(M)|^2 = |sym(M)|_F^2
    norms = jax.jit(lambda p: jnp.sum(sensing_op(p, mat) ** 2))
    ratios = [float(norms(_problem(symmetric=symmetric, seed=100 + i)) / jnp.sum(mat ** 2))
              for i in range(num_ops)]
    self.assertAlmostEqual(np.mean(ratios), 1.0, delta=0.07)

  def test_symmetrized_operator_ignores_antisymmetric_part(self):
    p = _problem(symmetric=True)
    z = _normal(3, (6, 6))
    np.testing.assert_allclose(sensing_op(p, z - z.T), 0.0, atol=1e-12)

  def test_noise_std(self):
    resid = []
    for seed in range(25):  # 25 x 80 = 2000 noise draws; noise is traced: the _problem compile
      p = make_problem(jax.random.key(seed), n1=6, rank=2, num_measurements=80, kappa=2.0,
                       noise=0.1, dtype=jnp.float64)
      resid.append(np.asarray(p.y - sensing_op(p, p.m_star)))
    # The sample std of 2000 draws has relative std 1/sqrt(2 * 2000): tolerance is 5 of those.
    self.assertAlmostEqual(np.concatenate(resid).std(), 0.1, delta=0.1 * 5 / np.sqrt(2 * 2000))

  def test_factorization_operators_are_identity(self):
    p = _problem(sensing=False)
    mat = _normal(2, (6, 6))
    np.testing.assert_array_equal(sensing_op(p, mat), mat)
    np.testing.assert_array_equal(adjoint_op(p, mat), mat)
    np.testing.assert_array_equal(gram_op(p, mat), mat)
    np.testing.assert_allclose(residual_gradient(p, mat), mat - p.m_star, rtol=1e-15)

  def test_gram_and_residual_gradient(self):
    p = _problem()
    mat = _normal(2, (6, 6))
    sense, adjoint = _np_ops(p)
    np.testing.assert_allclose(gram_op(p, mat), adjoint(sense(np.asarray(mat))), rtol=1e-10)
    # Noiseless: A*(A(M) - y) = A*A(M - M*).
    np.testing.assert_allclose(residual_gradient(p, mat), gram_op(p, mat - p.m_star), atol=1e-12)

  @parameterized.named_parameters(
      ("rank_too_big", dict(n1=4, rank=5), "rank 5 exceeds min"),
      ("rank_zero", dict(n1=4, rank=0), "rank must be >= 1"),
      ("kappa_below_one", dict(n1=4, rank=2, kappa=0.5), r"kappa .* must be >= 1, got 0.5"),
      ("kappa_rank_one", dict(n1=4, rank=1, kappa=2.0), "rank-1 truth has kappa = 1"),
      ("negative_noise", dict(n1=4, rank=2, num_measurements=50, noise=-0.1), "noise must be >= 0"),
      ("noise_in_mf", dict(n1=4, rank=2, noise=0.1), "noise > 0 needs num_measurements"),
      # symmetric dof r(2n - r + 1)/2 = 2 * 7 / 2 = 7; asymmetric r(n1 + n2 - r) = 2 * 7 = 14.
      ("too_few_symmetric", dict(n1=4, rank=2, num_measurements=6), "need at least 7"),
      ("too_few_asymmetric", dict(n1=4, n2=5, rank=2, num_measurements=13, symmetric=False),
       "need at least 14"),
      ("zero_size", dict(n1=0, rank=1), "sizes must be positive"),
      ("symmetric_not_square", dict(n1=4, n2=5, rank=1), "needs n2 == n1"),
      ("int_dtype", dict(n1=4, rank=1, dtype=jnp.int32), "floating dtype"),
  )
  def test_validation(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      make_problem(KEY, **kwargs)

  def test_enough_measurements_accepted(self):
    # Exactly the degrees of freedom is accepted (eval_shape: validated and traced, not compiled).
    p = jax.eval_shape(lambda k: make_problem(k, n1=4, rank=2, num_measurements=7), KEY)
    self.assertEqual(p.A.shape, (7, 16))
    p = jax.eval_shape(lambda k: make_problem(k, n1=4, n2=5, rank=2, num_measurements=14,
                                              symmetric=False), KEY)
    self.assertEqual(p.A.shape, (14, 20))


class AlgorithmTest(parameterized.TestCase):

  @parameterized.parameters(("symmetric", True), ("asymmetric", False), ("one_step", True))
  def test_shapes_finite_dtype_stable_under_jit(self, name, sensing):
    # float32 here (float64 in the vmap tests); sensing and MF operator paths.
    dtype = jnp.float32
    p = _problem(dtype=dtype, sensing=sensing, symmetric=name == "symmetric")
    alg = _algorithms(3)[name]
    hp = {k: jnp.asarray(v, jnp.float64) for k, v in HP.items()}  # float64 hps must not promote
    state, metrics = jax.jit(functools.partial(run, alg, num_steps=6, record_every=2))(KEY, p, hp)
    for leaf in jax.tree.leaves(state.inner):
      self.assertIn(leaf.dtype, (dtype, jnp.int32))
      self.assertTrue(np.all(np.isfinite(leaf)))
    n1, n2 = p.m_star.shape
    shapes = {"symmetric": [(n1, 3)], "asymmetric": [(n1, 3), (n2, 3)],
              "one_step": [(n1, 3), (n2, 3), (), ()]}[name]
    self.assertEqual([leaf.shape for leaf in state.inner], shapes)
    for key in ("error", "loss"):
      self.assertEqual(metrics[key].shape, (3,))
      self.assertEqual(metrics[key].dtype, dtype)
      self.assertTrue(np.all(np.isfinite(metrics[key])))
    self.assertEqual(int(state.diverged_at), -1)

  def test_problem_key_reused_for_init_gives_unrelated_draws(self):
    # Regression: with split-derived keys, make_problem(key) and init(key) drew U and F_0 from the
    # same bits, so F_0 lay exactly in span(U) and the slow extra directions were never excited.
    p = _problem(symmetric=False, sensing=False)
    s = asymmetric_gd(2).init(KEY, p, alpha=1.0)
    outside = s.f - p.u @ (p.u.T @ s.f)
    self.assertGreater(float(jnp.linalg.norm(outside) / jnp.linalg.norm(s.f)), 0.3)

  def test_hyperparameter_names(self):
    algs = _algorithms(2)
    self.assertEqual(algs["symmetric"].hyperparams, ("alpha", "eta"))
    self.assertEqual(algs["asymmetric"].hyperparams, ("alpha", "eta", "init_ratio"))
    self.assertEqual(algs["one_step"].hyperparams,
                     ("alpha", "eta", "init_ratio", "rebalance_scale", "switch_tol"))

  @parameterized.parameters(0, -1, 2.0)
  def test_bad_width(self, k):
    for factory in (symmetric_gd, asymmetric_gd, asymmetric_gd_one_step):
      with self.assertRaisesRegex(ValueError, "width k must be an int >= 1"):
        factory(k)

  def test_init_scales(self):
    # X_0 entries N(0, alpha^2/n): E[X_0^T X_0] = alpha^2 I_k. Averaged over K = 40 draws with
    # n >= 200, an entry of X_0^T X_0 / alpha^2 has standard deviation <= sqrt(2 / (n K)) = 0.016:
    # tolerance 0.08 is 5 of those. G_0 is scaled by init_ratio.
    # init reads only the shape and dtype of m_star: a 200 x 300 zero truth is enough.
    p = _problem(symmetric=False, sensing=False)._replace(m_star=jnp.zeros((200, 300)))
    gram = lambda a: jnp.mean(jnp.einsum("bik,bil->bkl", a, a), axis=0)

    @jax.jit
    def grams(keys):
      x = jax.vmap(lambda k: symmetric_gd(3).init(k, p, alpha=0.5).x)(keys)
      s = jax.vmap(lambda k: asymmetric_gd(3).init(k, p, alpha=0.5, init_ratio=0.2))(keys)
      return gram(x), gram(s.f), gram(s.g)

    gx, gf, gg = grams(jax.random.split(jax.random.key(9), 40))
    np.testing.assert_allclose(gx / 0.25, np.eye(3), atol=0.08)
    np.testing.assert_allclose(gf / 0.25, np.eye(3), atol=0.08)
    np.testing.assert_allclose(gg / 0.01, np.eye(3), atol=0.08)

  def test_symmetric_step_matches_numpy(self):
    p = _problem()
    alg = symmetric_gd(3)
    s = alg.init(KEY, p, alpha=0.5)
    x_ref = _np_symmetric_steps(p, np.asarray(s.x), 0.1, steps=4)
    step = jax.jit(functools.partial(alg.step, eta=0.1))
    for _ in range(4):
      s, metrics = step(s, p)
    np.testing.assert_allclose(s.x, x_ref, rtol=1e-10, atol=1e-13)
    sense, _ = _np_ops(p)
    np.testing.assert_allclose(
        metrics["error"], np.sum((x_ref @ x_ref.T - np.asarray(p.m_star)) ** 2), rtol=1e-10)
    np.testing.assert_allclose(
        metrics["loss"], 0.25 * np.sum((sense(x_ref @ x_ref.T) - np.asarray(p.y)) ** 2), rtol=1e-10)

  def test_asymmetric_step_matches_numpy(self):
    p = _problem(symmetric=False)
    alg = asymmetric_gd(3)
    s = alg.init(KEY, p, alpha=0.5, init_ratio=0.5)
    f_ref, g_ref = _np_asymmetric_steps(p, np.asarray(s.f), np.asarray(s.g), 0.1, steps=4)
    step = jax.jit(functools.partial(alg.step, eta=0.1))
    for _ in range(4):
      s, metrics = step(s, p)
    np.testing.assert_allclose(s.f, f_ref, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(s.g, g_ref, rtol=1e-10, atol=1e-13)
    sense, _ = _np_ops(p)
    np.testing.assert_allclose(
        metrics["loss"], 0.5 * np.sum((sense(f_ref @ g_ref.T) - np.asarray(p.y)) ** 2), rtol=1e-10)
    np.testing.assert_allclose(metrics["imbalance"],
                               np.linalg.norm(f_ref.T @ f_ref - g_ref.T @ g_ref), rtol=1e-10)

  @parameterized.parameters("symmetric", "asymmetric")
  def test_factorization_is_sensing_with_identity_operator(self, name):
    # MF equals sensing with A_i = sqrt(m) e_i (m = n1 n2): then A(M) = vec(M) and A* = reshape.
    p_mf = _problem(sensing=False, symmetric=name == "symmetric")
    n1, n2 = p_mf.m_star.shape
    p_id = p_mf._replace(A=np.sqrt(n1 * n2) * jnp.eye(n1 * n2), y=p_mf.m_star.reshape(-1))
    alg = _algorithms(3)[name]
    s = alg.init(KEY, p_mf, alpha=0.5)
    s_mf, m_mf = alg.step(s, p_mf, eta=0.1)
    s_id, m_id = alg.step(s, p_id, eta=0.1)
    chex.assert_trees_all_close(s_mf, s_id, rtol=1e-12, atol=1e-14)
    chex.assert_trees_all_close(m_mf, m_id, rtol=1e-12, atol=1e-14)
    # And the MF step is X - eta (X X^T - M*) X exactly.
    if name == "symmetric":
      x = np.asarray(s.x)
      expected = x - 0.1 * (x @ x.T - np.asarray(p_mf.m_star)) @ x
      np.testing.assert_allclose(s_mf.x, expected, rtol=1e-12)

  @parameterized.parameters("symmetric", "one_step")  # one_step runs the asymmetric update too
  def test_vmap_over_seeds_equals_loop(self, name):
    p = _problem(symmetric=name == "symmetric")
    alg = _algorithms(3)[name]
    if name == "one_step":  # switch_tol 2 triggers the rebalance (the cond) at step 1 of every run
      hp, one = HP | {"switch_tol": 2.0}, _run_one_step  # already compiled for this problem size
    else:
      hp, one = HP, jax.jit(functools.partial(run, alg, num_steps=6, record_every=1))
    keys = jax.random.split(jax.random.key(5), 3)
    batched = jax.jit(jax.vmap(lambda k: run(alg, k, p, hp, num_steps=6, record_every=1)))(keys)
    self.assertEqual(batched[0].inner[0].shape, (3, 6, 3))
    for leaf in jax.tree.leaves(batched):  # float64 problem: float64 state and metrics, int32 steps
      self.assertIn(leaf.dtype, (jnp.float64, jnp.int32))
    for i in range(3):
      single = one(keys[i], p, hp)
      # vmap batches the operator's matvecs into matmuls: equal up to float64 round-off.
      chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], batched), single, rtol=1e-10,
                                  atol=1e-14)

  def test_compiles_once(self):
    # _run_one_step is wrapped in chex.assert_max_traces(n=1): new keys, hyperparameter values and
    # problem seeds (other RebalanceTest calls too) must reuse its single trace.
    p = _problem(symmetric=False)
    for seed, alpha, eta, tol in [(0, 0.3, 0.1, 1e-2), (1, 0.1, 0.05, 0.5), (2, 0.5, 0.2, 0.0)]:
      hp = {"alpha": alpha, "eta": eta, "switch_tol": tol}
      jax.block_until_ready(_run_one_step(jax.random.key(seed), p, hp))
    other = _problem(symmetric=False, seed=3)
    jax.block_until_ready(_run_one_step(KEY, other, HP | {"switch_tol": 0.1}))
    with self.assertRaises(AssertionError):  # and the counter does count: another shape retraces
      _run_one_step(KEY, _problem(symmetric=False, sensing=False), HP | {"switch_tol": 0.1})




class RebalanceTest(parameterized.TestCase):

  @parameterized.parameters(1.0, 0.5, 3.0)
  def test_preserves_product_and_balances(self, b):
    f = _normal(4, (9, 4)) * jnp.array([[1.0, 0.5, 0.1, 0.01]])
    g = _normal(5, (7, 4))
    f2, g2 = _rebalance(f, g, b)
    np.testing.assert_allclose(f2 @ g2.T, f @ g.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(f2.T @ f2, b * np.eye(4), atol=1e-10)

  @parameterized.parameters(jnp.float32, jnp.float64)
  def test_rank_deficient_f_stays_finite_and_product_preserved(self, dtype):
    f = jnp.zeros((9, 4), dtype).at[:, 0].set(1.0)  # F^T F has three zero eigenvalues (floored)
    g = jnp.ones((7, 4), dtype)
    f2, g2 = _rebalance(f, g, 1.0)
    self.assertTrue(np.all(np.isfinite(f2)) and np.all(np.isfinite(g2)))
    np.testing.assert_allclose(f2 @ g2.T, f @ g.T, rtol=1e-5)

  def test_applied_exactly_once_at_threshold(self):
    p = _problem(symmetric=False)
    hp = {"alpha": 0.3, "eta": 0.1, "switch_tol": 2.0}  # relative error < 2 already after step 1
    state, metrics = _run_one_step(KEY, p, hp)
    np.testing.assert_array_equal(metrics["rebalanced_at"], [1] * 6)
    self.assertEqual(state.inner.rebalanced_at.dtype, jnp.int32)
    # Once only: later GD steps move F^T F away from I again.
    f = state.inner.f
    self.assertGreater(float(jnp.max(jnp.abs(f.T @ f - jnp.eye(3)))), 1e-6)
    # Right after the step F^T F = b I and the product is that of the plain GD step.
    alg = asymmetric_gd_one_step(3)
    s1, m1 = alg.step(alg.init(KEY, p, alpha=0.3), p, eta=0.1, switch_tol=2.0, rebalance_scale=2.0)
    plain, m_plain = asymmetric_gd(3).step(asymmetric_gd(3).init(KEY, p, alpha=0.3), p, eta=0.1)
    np.testing.assert_allclose(s1.f.T @ s1.f, 2.0 * np.eye(3), atol=1e-10)
    np.testing.assert_allclose(s1.f @ s1.g.T, plain.f @ plain.g.T, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(m1["error"], m_plain["error"], rtol=1e-10)

  def test_applied_at_the_first_step_below_an_intermediate_threshold(self):
    # Before the switch the run is plain GD (switch_tol 0 never fires): the switch must come at the
    # first step whose relative error |F G^T - M*|_F / |M*|_F is below a tol strictly between two
    # recorded values. alpha 2, eta 0.3 make the error fall from 3.2 to 0.79 in 6 steps, and tol
    # sits just under an earlier value < 1, so a switch on the squared error (or on |M*|_F^2) fires
    # a step early and one that lags fires late.
    p = _problem(symmetric=False)
    hp = {"alpha": 2.0, "eta": 0.3}
    _, plain = _run_one_step(KEY, p, hp | {"switch_tol": 0.0})
    rel = np.sqrt(np.asarray(plain["error"]) / float(jnp.sum(p.m_star**2)))
    lasts = [j for j in range(2, len(rel)) if rel[j] < rel[:j].min() < 1.0]
    self.assertNotEmpty(lasts, f"relative errors do not fall below 1: {rel}")
    j = lasts[0]
    prev = rel[:j].min()
    tol = float(prev - 0.1 * (prev - rel[j]))  # rel[t] >= prev > tol for t < j, rel[j] < tol
    _, metrics = _run_one_step(KEY, p, hp | {"switch_tol": tol})
    np.testing.assert_array_equal(metrics["rebalanced_at"], [-1] * j + [j + 1] * (len(rel) - j))
    # Up to and at the switch the product (so the error) is plain GD's; afterwards it is not.
    np.testing.assert_allclose(metrics["error"][: j + 1], plain["error"][: j + 1], rtol=1e-10)
    self.assertGreater(float(np.abs(metrics["error"][-1] / plain["error"][-1] - 1)), 1e-8)

  def test_non_finite_initial_state_is_diverged_at_step_0(self):
    # A NaN init scale makes X_0 NaN: the engine must report divergence at step 0, not 1 or never.
    for alg, sym in ((symmetric_gd(2), True), (asymmetric_gd(2), False)):
      state, _ = run(alg, KEY, _problem(symmetric=sym), {"alpha": float("nan"), "eta": 0.1},
                     num_steps=2, record_every=1)
      self.assertEqual(int(state.diverged_at), 0, alg.name)

  def test_never_applied_below_threshold(self):
    p = _problem(symmetric=False)
    state, metrics = _run_one_step(KEY, p, {"alpha": 0.3, "eta": 0.1, "switch_tol": 0.0})
    np.testing.assert_array_equal(metrics["rebalanced_at"], [-1] * 6)
    plain = asymmetric_gd(3).init(KEY, p, alpha=0.3)
    for _ in range(6):
      plain, _ = asymmetric_gd(3).step(plain, p, eta=0.1)
    np.testing.assert_allclose(state.inner.f, plain.f, rtol=1e-12)

  def test_rebalance_fn_is_pluggable(self):
    def double_f(f, g, scale):
      del scale
      return 2.0 * f, 0.5 * g

    p = _problem(symmetric=False)
    alg = asymmetric_gd_one_step(3, rebalance_fn=double_f)
    self.assertIn("double_f", alg.name)
    s0 = alg.init(KEY, p, alpha=0.3)
    s1, _ = alg.step(s0, p, eta=0.1, switch_tol=2.0)
    plain, _ = asymmetric_gd(3).step(asymmetric_gd(3).init(KEY, p, alpha=0.3), p, eta=0.1)
    np.testing.assert_allclose(s1.f, 2.0 * plain.f, rtol=1e-12)
    np.testing.assert_allclose(s1.g, 0.5 * plain.g, rtol=1e-12)


if __name__ == "__main__":
  absltest.main()
