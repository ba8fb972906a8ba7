"""add_noise / noisy_sgd: optax semantics pinned, optax defects fixed, edge cases.

Statistical tolerances are 5 standard errors of the statistic; keys are fixed.
"""

import math
import os
import subprocess
import sys
import textwrap
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import repro.optim as ro
from repro.optim.additive_noise import AddNoiseState


def _tree():
    return {
        "dense": {"kernel": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "bias": jnp.ones(4)},
        "scale": jnp.asarray(0.5),
        "layers": [jnp.full((2, 5), 0.1), jnp.full((7,), -0.2)],
    }


def _steps(tx, grads, steps, params=None):
    state = tx.init(grads)
    out = []
    for _ in range(steps):
        updates, state = tx.update(grads, state, params)
        out.append(updates)
    return out, state


def _assert_trees_equal(a, b, atol=0.0):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        if atol:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)
        else:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ----------------------------------------------------------------------------- optax semantics


@pytest.mark.parametrize("key", [0, 42])
def test_optax_generator_reproduces_optax_bit_for_bit(key):
    grads = _tree()
    ours, _ = _steps(ro.add_noise(0.3, 0.55, key, generator="optax"), grads, 4)
    theirs, _ = _steps(optax.add_noise(0.3, 0.55, key), grads, 4)
    _assert_trees_equal(ours, theirs)
    lr = optax.linear_schedule(0.1, 0.01, 4)
    ours, _ = _steps(ro.noisy_sgd(lr, 0.3, 0.55, key, generator="optax"), grads, 4)
    theirs, _ = _steps(optax.noisy_sgd(lr, 0.3, 0.55, key), grads, 4)
    _assert_trees_equal(ours, theirs)


def test_optax_generator_matches_optax_under_jit_and_with_a_legacy_key():
    grads = _tree()
    ours_tx = ro.add_noise(1.0, 0.55, jax.random.PRNGKey(5), generator="optax")
    theirs_tx = optax.add_noise(1.0, 0.55, jax.random.key(5))
    ours = jax.jit(ours_tx.update)(grads, ours_tx.init(grads))[0]
    theirs = jax.jit(theirs_tx.update)(grads, theirs_tx.init(grads))[0]
    _assert_trees_equal(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("generator", ["threefry_boxmuller", "jax", "optax"])
def test_noise_scale_law_with_the_same_key(generator):
    """Edge case 1: add_noise(eta, gamma) = g + sqrt(eta / t^gamma) * (add_noise(1, 0) - g)."""
    grads = _tree()
    eta, gamma = 0.7, 0.55
    scaled, _ = _steps(ro.add_noise(eta, gamma, 3, generator=generator), grads, 5)
    unit, _ = _steps(ro.add_noise(1.0, 0.0, 3, generator=generator), grads, 5)
    for t, (u_scaled, u_unit) in enumerate(zip(scaled, unit, strict=True), start=1):
        std = math.sqrt(eta / t**gamma)
        for s, u, g in zip(*(jax.tree.leaves(x) for x in (u_scaled, u_unit, grads)), strict=True):
            np.testing.assert_allclose(s - g, std * (u - g), rtol=1e-5, atol=1e-6)


def test_empirical_variance_per_step_is_eta_over_t_to_the_gamma():
    """Variance (not std) eta / t^gamma, first step t = 1; mean zero."""
    n = 1 << 18
    eta, gamma = 0.5, 0.55
    grads = {"w": jnp.zeros(n)}
    updates, _ = _steps(ro.add_noise(eta, gamma, 11), grads, 10)
    for t in (1, 2, 10):
        noise = np.asarray(updates[t - 1]["w"], np.float64)
        expected = eta / t**gamma
        assert abs(noise.var() / expected - 1) < 5 * math.sqrt(2 / n), t
        assert abs(noise.mean()) < 5 * math.sqrt(expected / n), t


def test_step_convention_first_variance_is_eta():
    assert float(ro.noise_variance(0, 0.01, 0.55)) == pytest.approx(0.01)
    assert float(ro.noise_variance(1, 0.01, 0.55)) == pytest.approx(0.01 / 2**0.55)
    assert float(ro.noise_variance(9, 1.0, 0.55)) == pytest.approx(10**-0.55)
    # Not the tutorial's convention (step incremented before drawing: eta / 2^gamma first).
    assert float(ro.noise_variance(0, 0.01, 0.55)) != pytest.approx(0.01 / 2**0.55)
    assert float(ro.noise_variance(5, 0.3, 0.55, anneal=False)) == pytest.approx(0.3)


def test_fixed_variance_mode():
    grads = {"w": jnp.zeros(4096)}
    fixed, _ = _steps(ro.add_noise(0.2, 0.55, 1, anneal=False), grads, 6)
    unit, _ = _steps(ro.add_noise(1.0, 0.0, 1), grads, 6)
    for f, u in zip(fixed, unit, strict=True):
        np.testing.assert_allclose(f["w"], math.sqrt(0.2) * u["w"], rtol=1e-5, atol=1e-7)


def test_eta_and_gamma_schedules():
    grads = {"w": jnp.zeros(64)}
    eta = optax.linear_schedule(1.0, 0.5, 4)
    gamma = optax.piecewise_constant_schedule(0.5, {2: 2.0})  # 0.5 for counts 0-1, then 1.0
    scheduled, _ = _steps(ro.add_noise(eta, gamma, 2), grads, 4)
    unit, _ = _steps(ro.add_noise(1.0, 0.0, 2), grads, 4)
    for count, (s, u) in enumerate(zip(scheduled, unit, strict=True)):
        t = count + 1
        variance = float(eta(count)) / t ** float(gamma(count))
        np.testing.assert_allclose(s["w"], math.sqrt(variance) * u["w"], rtol=1e-5, atol=1e-7)


def test_noisy_sgd_is_minus_lr_times_noisy_gradient():
    """Edge case 2: noise before the learning rate, also with a schedule."""
    grads = _tree()
    for lr in (0.1, optax.exponential_decay(0.1, 1, 0.5)):
        sgd_updates, _ = _steps(ro.noisy_sgd(lr, 0.3, 0.55, key=9), grads, 3)
        noisy_grads, _ = _steps(ro.add_noise(0.3, 0.55, 9), grads, 3)
        for count, (u, g) in enumerate(zip(sgd_updates, noisy_grads, strict=True)):
            rate = lr(count) if callable(lr) else lr
            for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(g), strict=True):
                np.testing.assert_allclose(a, -rate * b, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize(
    "hyper",
    ["python", "numpy", "jnp_f32", "jnp_bf16", "inject"],
)
def test_update_dtype_equals_gradient_dtype(dtype, hyper):
    """Edge case 5: dtypes kept for many steps whatever type the hyperparameters have."""
    values = {
        "python": (0.1, 0.3, 0.55),
        "numpy": (np.float64(0.1), np.float64(0.3), np.float64(0.55)),
        "jnp_f32": (jnp.float32(0.1), jnp.float32(0.3), jnp.float32(0.55)),
        "jnp_bf16": (jnp.bfloat16(0.1), jnp.bfloat16(0.3), jnp.bfloat16(0.55)),
    }
    if hyper == "inject":
        tx = optax.inject_hyperparams(ro.noisy_sgd)(learning_rate=0.1, eta=0.3, gamma=0.55, key=0)
    else:
        lr, eta, gamma = values[hyper]
        tx = ro.noisy_sgd(lr, eta, gamma, key=0)
    params = {"w": jnp.ones((4, 3), dtype), "b": jnp.zeros(3, dtype)}

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s = carry
            grads = jax.tree.map(lambda x: 0.1 * x, p)
            updates, s = tx.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), jax.tree.map(
                lambda u: u.dtype == dtype, updates
            )

        (p, _), ok = jax.lax.scan(body, (params, tx.init(params)), None, length=20)
        return p, ok

    final, ok = run(params)
    assert all(bool(jnp.all(x)) for x in jax.tree.leaves(ok))
    assert all(x.dtype == dtype for x in jax.tree.leaves(final))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(final))


def test_mixed_float32_float64_tree():
    with jax.enable_x64(True):
        grads = {"a": jnp.ones(5, jnp.float32), "b": jnp.ones(5, jnp.float64)}
        for generator in ("threefry_boxmuller", "jax", "optax"):
            tx = ro.noisy_sgd(jnp.float64(0.1), np.float64(0.2), 0.55, key=1, generator=generator)
            updates, _ = tx.update(grads, tx.init(grads))
            assert updates["a"].dtype == jnp.float32 and updates["b"].dtype == jnp.float64


def test_bf16_noise_is_drawn_in_float32():
    """optax draws bf16 normals (8-bit mantissa uniforms); ours have full resolution."""
    grads = {"w": jnp.zeros(1 << 14, jnp.bfloat16)}
    ours = ro.add_noise(1.0, 0.0, 0).update(grads, ro.add_noise(1.0, 0.0, 0).init(grads))[0]
    theirs_tx = optax.add_noise(1.0, 0.0, 0)
    theirs = theirs_tx.update(grads, theirs_tx.init(grads))[0]
    assert ours["w"].dtype == theirs["w"].dtype == jnp.bfloat16
    assert len(np.unique(np.asarray(ours["w"], np.float32))) > len(
        np.unique(np.asarray(theirs["w"], np.float32))
    )


# ----------------------------------------------------------------------------- trees


class Pair(NamedTuple):
    first: jax.Array
    second: jax.Array


def test_unusual_trees():
    """Edge case 6: None leaves, empty trees, NamedTuples, scalars, size-0, ints, floats."""
    tx = ro.add_noise(0.1, 0.55, 0)
    grads = {
        "none": None,
        "pair": Pair(jnp.ones(3), jnp.asarray(2.0)),
        "empty": jnp.zeros((0, 4)),
        "count": jnp.arange(3),
        "python": 1.5,
    }
    updates, state = tx.update(grads, tx.init(grads))
    assert updates["none"] is None
    assert isinstance(updates["pair"], Pair) and updates["pair"].second.shape == ()
    assert updates["empty"].shape == (0, 4)
    np.testing.assert_array_equal(updates["count"], grads["count"])  # integers pass through
    assert updates["python"].dtype == jnp.float32 and float(updates["python"]) != 1.5
    assert int(state.count) == 1
    assert tx.update({}, tx.init({}))[0] == {}
    with pytest.raises(TypeError, match="real gradients"):
        tx.update({"c": jnp.ones(2, jnp.complex64)}, tx.init(None))


def test_a_leaf_keeps_its_noise_when_parameters_are_added():
    small = {"enc": {"w": jnp.zeros((4, 4))}}
    grown = {"enc": {"w": jnp.zeros((4, 4)), "b": jnp.zeros(4)}, "dec": jnp.zeros(8)}
    first, _ = _steps(ro.add_noise(1.0, 0.55, 4), small, 3)
    second, _ = _steps(ro.add_noise(1.0, 0.55, 4), grown, 3)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_allclose(a["enc"]["w"], b["enc"]["w"], atol=2e-6)


# ----------------------------------------------------------------------------- keys


def test_key_forms_advance_and_agree():
    """Edge case 7: int / typed / legacy keys agree; the key advances; eager == jit."""
    grads = _tree()
    by_int, state = _steps(ro.add_noise(1.0, 0.55, 8), grads, 3)
    by_typed, _ = _steps(ro.add_noise(1.0, 0.55, jax.random.key(8)), grads, 3)
    by_legacy, _ = _steps(ro.add_noise(1.0, 0.55, jax.random.PRNGKey(8)), grads, 3)
    _assert_trees_equal(by_int, by_typed)
    _assert_trees_equal(by_int, by_legacy)
    assert not np.allclose(by_int[0]["dense"]["kernel"], by_int[1]["dense"]["kernel"])
    initial = ro.add_noise(1.0, 0.55, 8).init(grads).rng_key
    assert not np.array_equal(jax.random.key_data(state.rng_key), jax.random.key_data(initial))
    tx = ro.add_noise(1.0, 0.55, 8)
    jitted = jax.jit(tx.update)(grads, tx.init(grads))[0]
    _assert_trees_equal(jitted, by_int[0], atol=2e-6)


def test_seed_and_key_arguments():
    with pytest.raises(ValueError, match="only one of seed or key"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ro.noisy_sgd(0.1, key=1, seed=2)
    with pytest.warns(DeprecationWarning):
        ro.add_noise(0.1, 0.55, seed=1)
    with pytest.warns(UserWarning, match="no key given"):
        ro.noisy_sgd(0.1)


def test_leaves_and_steps_get_independent_noise():
    n = 1 << 16
    grads = {"a": jnp.zeros(n), "b": jnp.zeros(n)}
    updates, _ = _steps(ro.add_noise(1.0, 0.0, 12), grads, 2)
    samples = [updates[0]["a"], updates[0]["b"], updates[1]["a"]]
    flat = [np.asarray(x, np.float64) for x in samples]
    for i in range(3):
        for j in range(i + 1, 3):
            assert abs(np.corrcoef(flat[i], flat[j])[0, 1]) < 5 / math.sqrt(n)


# ----------------------------------------------------------------------------- jit, vmap, sharding


def test_no_recompilation_and_abstract_init():
    """Edge case 8: one trace for repeated calls; init on ShapeDtypeStruct."""
    tx = ro.noisy_sgd(0.1, 0.3, 0.55, key=0)
    params = _tree()
    traces = []

    @jax.jit
    def step(grads, state):
        traces.append(None)
        return tx.update(grads, state, grads)

    state = tx.init(params)
    _, state = step(params, state)
    _, state = step(jax.tree.map(lambda x: x + 1, params), state)
    assert len(traces) == 1
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    shapes = jax.eval_shape(tx.init, abstract)
    assert isinstance(shapes[0], AddNoiseState)
    tx.init(abstract)


def test_engine_pattern_vmap_over_replicas_with_traced_hyperparameters():
    """The engine builds chain(clip, add_noise(eta, gamma, key), optimizer) inside vmap."""
    params = {"w": jnp.linspace(-1, 1, 6).reshape(2, 3), "b": jnp.zeros(3)}

    def replica(key, eta, lr, gamma=0.55):
        tx = optax.chain(
            optax.clip_by_global_norm(1.0),
            ro.add_noise(eta, gamma, key),
            ro.noisy_sgd(lr, 0.0, 0.55, key),
        )
        state = tx.init(params)

        def body(carry, _):
            p, s = carry
            grads = jax.tree.map(lambda x: 2 * x, p)
            updates, s = tx.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        return jax.lax.scan(body, (params, state), None, length=3)[0][0]

    keys = jax.random.split(jax.random.key(0), 3)
    etas = jnp.array([0.0, 0.1, 1.0])
    lrs = jnp.array([0.1, 0.05, 0.1])
    gammas = jnp.array([0.55, 0.0, 1.0])
    batched = jax.jit(jax.vmap(replica))(keys, etas, lrs, gammas)
    for i in range(3):
        alone = replica(keys[i], float(etas[i]), float(lrs[i]), float(gammas[i]))
        for x, y in zip(jax.tree.leaves(batched), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(x[i], y, rtol=1e-5, atol=1e-6)
    assert not np.allclose(batched["w"][1], batched["w"][2])


def test_eight_device_cpu_mesh_keeps_shardings():
    """Edge case 8: a sharded update on 8 CPU devices keeps shardings and values."""
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, optax
        from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
        import repro.optim as ro
        assert jax.device_count() == 8
        params = {"w": jnp.arange(64.0).reshape(16, 4) / 64, "b": jnp.ones(4)}
        for axis_type in (AxisType.Explicit, AxisType.Auto):
            mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
            shard = {"w": NamedSharding(mesh, P("data")), "b": NamedSharding(mesh, P())}
            with jax.set_mesh(mesh):
                for tx in (ro.noisy_sgd(0.1, 0.3, 0.55, key=0),
                           ro.noisy_sgd(0.1, 0.3, 0.55, key=0, layout="per_leaf"),
                           ro.novograd(0.1, weight_decay=1e-3)):
                    local = tx.update(params, tx.init(params), params)[0]
                    sharded = jax.device_put(params, shard)
                    state = jax.jit(tx.init)(sharded)
                    updates, _ = jax.jit(tx.update)(sharded, state, sharded)
                    for name in params:
                        assert updates[name].sharding.is_equivalent_to(shard[name], 2), name
                        np.testing.assert_allclose(updates[name], local[name], atol=1e-6)
        # Replicas vmapped and sharded over devices (the engine's layout): each device
        # draws its own replicas' noise, with no cross-device communication.
        def replica(key, eta):
            tx = ro.noisy_sgd(0.1, eta, 0.55, key=key)
            return tx.update(params, tx.init(params), params)[0]
        keys = jax.random.split(jax.random.key(0), 8)
        etas = jnp.linspace(0.1, 0.8, 8)
        mesh = jax.make_mesh((8,), ("replica",), axis_types=(AxisType.Auto,))
        with jax.set_mesh(mesh):
            spread = NamedSharding(mesh, P("replica"))
            args = (jax.device_put(keys, spread), jax.device_put(etas, spread))
            step = jax.jit(jax.vmap(replica))
            hlo = step.lower(*args).compile().as_text()
            assert "all-reduce" not in hlo and "all-gather" not in hlo
            out = step(*args)
        expected = jax.vmap(replica)(keys, etas)
        assert out["w"].sharding.is_equivalent_to(spread, 3)
        np.testing.assert_allclose(out["w"], expected["w"], atol=1e-6)
        print("ok")
        """
    )
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


# ----------------------------------------------------------------------------- wrappers, counter


def test_saturating_counter_keeps_variance_finite():
    """Edge case 9."""
    tx = ro.add_noise(1.0, 0.55, 0)
    grads = {"w": jnp.zeros(8)}
    state = tx.init(grads)._replace(count=jnp.asarray(np.iinfo(np.int32).max, jnp.int32))
    updates, new_state = tx.update(grads, state)
    assert int(new_state.count) == np.iinfo(np.int32).max
    assert np.all(np.isfinite(updates["w"])) and np.any(updates["w"] != 0)
    assert float(ro.noise_variance(np.iinfo(np.int32).max, 1.0, 0.55)) > 0


def test_multisteps_masked_and_extra_arguments():
    """Edge case 10."""
    params = {"w": jnp.ones(3), "b": jnp.ones(2)}
    multi = optax.MultiSteps(ro.noisy_sgd(0.1, 0.3, 0.55, key=0), every_k_schedule=3)
    state = multi.init(params)
    for step in range(6):
        updates, state = multi.update(params, state, params)
        emitted = (step + 1) % 3 == 0
        assert all(bool(jnp.any(u != 0)) == emitted for u in jax.tree.leaves(updates))
    masked = optax.masked(ro.add_noise(1.0, 0.0, 0), {"w": True, "b": False})
    updates, _ = masked.update(params, masked.init(params))
    np.testing.assert_array_equal(updates["b"], params["b"])
    assert not np.allclose(updates["w"], params["w"])
    tx = ro.noisy_sgd(0.1, key=0)
    tx.update(params, tx.init(params), params, loss=1.0, anything="ignored")


# ----------------------------------------------------------------------- validation, composition


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ro.add_noise(-1.0, 0.55, 0), "eta must be >= 0, got -1.0"),
        (lambda: ro.add_noise(0.1, -0.5, 0), "gamma must be >= 0, got -0.5"),
        (lambda: ro.noisy_sgd(-0.1, key=0), "learning_rate must be >= 0, got -0.1"),
        (lambda: ro.noisy_sgd(0.1, eta=-2.0, key=0), "eta must be >= 0, got -2.0"),
        (lambda: ro.add_noise(0.1, 0.5, 0, generator="fast"), "generator must be one of"),
        (lambda: ro.add_noise(0.1, 0.5, 0, layout="flat"), "layout must be one of"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


# Rosenbrock's function from (-1, 1), where the gradient is (-4, 0): a trajectory whose
# gradients depend on the noise added before, checked step by step against the documented
# noise stream and a float64 reference written out by hand.
ROSENBROCK_START = (-1.0, 1.0)
# Measured over keys 0-4 (the trajectories below, one key each): worst |float32
# transformation - float64 reference| 1.0e-5 (adam chain: its division by sqrt(v) scales up
# rounding) and 6.3e-7 (noisy_sgd); with the noise switched off (eta = 0) the trajectories
# move by >= 0.12 (adam) and >= 2.7e-4 (noisy_sgd), far outside these tolerances.
ADAM_ATOL = 3e-5
SGD_ATOL = 2e-6


def _rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def _rosenbrock_grad(x: np.ndarray) -> np.ndarray:
    return np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])


def _trajectory(tx, steps: int) -> np.ndarray:
    """``[steps + 1, 2]`` iterates of ``tx`` on Rosenbrock's function (float32, scanned)."""

    @jax.jit
    def run(x):
        def body(carry, _):
            x, state = carry
            updates, state = tx.update(jax.grad(_rosenbrock)(x), state, x)
            x = optax.apply_updates(x, updates)
            return (x, state), x

        return jax.lax.scan(body, (x, tx.init(x)), None, length=steps)[1]

    start = jnp.array(ROSENBROCK_START)
    return np.concatenate([np.asarray(start)[None], np.asarray(run(start))]).astype(np.float64)


def _documented_noise(seed: int, steps: int) -> list[np.ndarray]:
    """xi_t of the module docstring: update t (t = 1, 2, ...) draws
    ``tree_normal_like(s_t, params)`` with ``(k_t, s_t) = jax.random.split(k_{t-1})`` and
    ``k_0 = jax.random.key(seed)``."""
    key, draws = jax.random.key(seed), []
    template = jnp.zeros(2)
    for _ in range(steps):
        key, step_key = jax.random.split(key)
        draws.append(np.asarray(ro.tree_normal_like(step_key, template), np.float64))
    return draws


def _sigma(t: int, eta: float, gamma: float) -> float:
    return math.sqrt(eta / t**gamma)


def test_adam_chain_adds_the_noise_draw_to_the_clipped_gradient():
    """Neelakantan et al.'s Neural Programmer setup: chain(clip, add_noise, adam) is Adam on
    clip(g_t) + sigma_t xi_t, step by step (Adam written out: optax defaults, eps 1e-8)."""
    eta, gamma, clip, lr, steps = 0.01, 0.55, 1.0, 0.02, 60
    noisy = optax.chain(
        optax.clip_by_global_norm(clip), ro.add_noise(eta, gamma, 0), optax.adam(lr)
    )
    got = _trajectory(noisy, steps)
    x, m, v, want = np.array(ROSENBROCK_START), np.zeros(2), np.zeros(2), [ROSENBROCK_START]
    for t, xi in enumerate(_documented_noise(0, steps), start=1):
        g = _rosenbrock_grad(x)
        g = g * min(1.0, clip / np.linalg.norm(g)) + _sigma(t, eta, gamma) * xi
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
        x = x - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        want.append(x)
    np.testing.assert_allclose(got, np.array(want), rtol=0, atol=ADAM_ATOL)
    quiet = optax.chain(
        optax.clip_by_global_norm(clip), ro.add_noise(0.0, gamma, 0), optax.adam(lr)
    )
    assert np.abs(_trajectory(quiet, steps) - got).max() > 50 * ADAM_ATOL


def test_noisy_sgd_steps_along_the_gradient_plus_the_noise_draw():
    """noisy_sgd on Rosenbrock: x_t = x_{t-1} - lr (grad(x_{t-1}) + sigma_t xi_t)."""
    eta, gamma, lr, steps = 0.01, 0.55, 1e-3, 200
    got = _trajectory(ro.noisy_sgd(lr, eta, gamma, key=3), steps)
    x, want = np.array(ROSENBROCK_START), [ROSENBROCK_START]
    for t, xi in enumerate(_documented_noise(3, steps), start=1):
        x = x - lr * (_rosenbrock_grad(x) + _sigma(t, eta, gamma) * xi)
        want.append(x)
    np.testing.assert_allclose(got, np.array(want), rtol=0, atol=SGD_ATOL)
    quiet = _trajectory(ro.noisy_sgd(lr, 0.0, gamma, key=3), steps)
    assert np.abs(quiet - got).max() > 50 * SGD_ATOL


def test_integer_gamma_does_not_overflow():
    """optax computes int32 count ** gamma: with gamma = 2 it overflows after 46341 steps."""
    count = 60_000
    assert float(ro.noise_variance(count, 1.0, 2)) == pytest.approx(1.0 / (count + 1) ** 2)
    tx = ro.add_noise(1.0, 2, 0)
    grads = {"w": jnp.zeros(4)}
    state = tx.init(grads)._replace(count=jnp.asarray(count, jnp.int32))
    updates, _ = tx.update(grads, state)
    assert np.all(np.isfinite(updates["w"]))
