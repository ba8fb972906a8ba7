"""NovoGrad: identical to optax where semantics are shared; fixes and variants tested."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import repro.optim as ro


def _params(dtype=jnp.float32):
    return {
        "w": (jnp.linspace(-1.0, 1.0, 20).reshape(4, 5)).astype(dtype),
        "b": jnp.full((5,), 0.3, dtype),
        "s": jnp.asarray(2.0, dtype),
    }


def _grad_fn(params, t):
    # A deterministic, step-dependent gradient with a zero layer now and then.
    grads = jax.tree.map(lambda p: jnp.sin(3.0 * p.astype(jnp.float32) + t).astype(p.dtype), params)
    return {**grads, "b": jnp.where(t % 7 == 3, jnp.zeros_like(grads["b"]), grads["b"])}


def _trajectory(tx, params, steps):
    @jax.jit
    def run(params):
        def body(carry, t):
            p, s = carry
            updates, s = tx.update(_grad_fn(p, t), s, p)
            return (optax.apply_updates(p, updates), s), updates

        return jax.lax.scan(body, (params, tx.init(params)), jnp.arange(steps))[1]

    return run(params)


# ----------------------------------------------------------------------------- optax parity


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"weight_decay": 1e-2},
        {"b1": 0.5, "b2": 0.9, "eps": 1e-4, "eps_root": 1e-3},
    ],
)
def test_identical_to_optax_over_many_steps(dtype, options):
    params = _params(dtype)
    ours = _trajectory(ro.novograd(0.01, **options), params, 60)
    theirs = _trajectory(optax.novograd(0.01, **options), params, 60)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_scale_by_novograd_and_mu_dtype_identical_to_optax():
    for dtype, options in (
        (jnp.bfloat16, {}),
        (jnp.float32, {"mu_dtype": jnp.float32, "weight_decay": 1e-3}),
    ):
        params = _params(dtype)
        ours = _trajectory(ro.scale_by_novograd(**options), params, 30)
        theirs = _trajectory(optax.scale_by_novograd(**options), params, 30)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_float32_momentum_for_bf16_params_works_under_jit():
    """optax 0.2.8 fails here (its cond branches return bf16 and float32 moments)."""
    params = _params(jnp.bfloat16)
    updates = _trajectory(ro.novograd(0.01, mu_dtype=jnp.float32), params, 20)
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
    reference = _trajectory(
        ro.novograd(0.01), jax.tree.map(lambda x: x.astype(jnp.float32), params), 20
    )
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(reference), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=0.1, atol=2e-3)
    theirs = optax.chain(optax.scale_by_novograd(mu_dtype=jnp.float32), optax.sgd(0.01))
    with pytest.raises(TypeError, match="cond branches"):
        _trajectory(theirs, params, 2)


# ----------------------------------------------------------------------------- hand-computed steps


def test_steps_one_and_two_by_hand():
    """Edge case 4: g = [3, 4] gives v = 25; each leaf has its own norm."""
    b1, b2, eps = 0.9, 0.25, 1e-6
    tx = ro.scale_by_novograd(b1=b1, b2=b2, eps=eps)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
    state = tx.init(params)
    g1 = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([-2.0])}
    u1, state = tx.update(g1, state, params)
    np.testing.assert_allclose(state.nu["a"], 25.0)
    np.testing.assert_allclose(state.nu["b"], 4.0)
    np.testing.assert_allclose(u1["a"], np.array([3.0, 4.0]) / (5 + eps), rtol=1e-6)
    np.testing.assert_allclose(u1["b"], [-2.0 / (2 + eps)], rtol=1e-6)
    g2 = {"a": jnp.array([0.0, 1.0]), "b": jnp.array([2.0])}
    u2, state = tx.update(g2, state, params)
    nu_a = b2 * 25 + (1 - b2) * 1.0
    np.testing.assert_allclose(state.nu["a"], nu_a, rtol=1e-6)
    expected = b1 * np.array([3.0, 4.0]) / (5 + eps) + np.array([0.0, 1.0]) / (
        math.sqrt(nu_a) + eps
    )
    np.testing.assert_allclose(u2["a"], expected, rtol=1e-6)
    np.testing.assert_allclose(state.nu["b"], 4.0, rtol=1e-6)


def test_zero_gradients_give_no_nan_and_do_not_restart_the_averages():
    """Edge case 3 (the step counter, not v == 0, picks the first step)."""
    tx = ro.novograd(0.1)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    _, state = tx.update({"w": jnp.array([1.0, 2.0, 2.0])}, state, params)
    updates, state = tx.update({"w": jnp.zeros(3)}, state, params)
    novo = state[0]
    np.testing.assert_allclose(novo.nu["w"], 0.25 * 9.0, rtol=1e-6)  # decayed, not reset
    assert np.all(np.isfinite(updates["w"]))
    updates, _ = tx.update({"w": jnp.zeros(3)}, tx.init(params), params)  # zero first step
    np.testing.assert_array_equal(updates["w"], np.zeros(3))


def test_zero_denominator_is_zero_not_nan():
    params = {"w": jnp.ones(2)}
    ours = ro.scale_by_novograd(eps=0.0, eps_root=0.0)
    updates, _ = ours.update({"w": jnp.zeros(2)}, ours.init(params), params)
    np.testing.assert_array_equal(updates["w"], np.zeros(2))
    theirs = optax.scale_by_novograd(eps=0.0, eps_root=0.0)
    nan_updates, _ = theirs.update({"w": jnp.zeros(2)}, theirs.init(params), params)
    assert np.all(np.isnan(nan_updates["w"]))  # the optax 0.2.8 behaviour fixed here


# ----------------------------------------------------------------------------- fixes


def test_weight_decay_schedule_works():
    """optax 0.2.8 raises TypeError for a schedule although its signature allows one."""
    schedule = optax.linear_schedule(0.1, 0.0, 2)
    tx = ro.scale_by_novograd(weight_decay=schedule)
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([3.0, 4.0])}
    state = tx.init(params)
    u1, state = tx.update(grads, state, params)
    np.testing.assert_allclose(u1["w"], grads["w"] / (5 + 1e-8) + 0.1 * params["w"], rtol=1e-6)
    u2, state = tx.update(grads, state, params)
    expected = 0.9 * u1["w"] + grads["w"] / (5 + 1e-8) + 0.05 * params["w"]
    np.testing.assert_allclose(u2["w"], expected, rtol=1e-6)
    constant = _trajectory(ro.novograd(0.01, weight_decay=0.01), _params(), 10)
    scheduled = _trajectory(
        ro.novograd(0.01, weight_decay=optax.constant_schedule(0.01)), _params(), 10
    )
    for a, b in zip(jax.tree.leaves(constant), jax.tree.leaves(scheduled), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    with pytest.raises(TypeError):
        optax.scale_by_novograd(weight_decay=schedule).update(
            grads, optax.scale_by_novograd(weight_decay=schedule).init(params), params
        )


def test_params_none_raises_only_when_weight_decay_needs_params():
    """Edge case 11."""
    grads = {"w": jnp.ones(3)}
    for tx in (ro.novograd(0.1), ro.scale_by_novograd(weight_decay=0.0)):
        updates, _ = tx.update(grads, tx.init(grads))
        assert np.all(np.isfinite(updates["w"]))
    for decay in (1e-3, optax.constant_schedule(1e-3)):
        tx = ro.novograd(0.1, weight_decay=decay)
        with pytest.raises(ValueError, match="needs params for weight decay"):
            tx.update(grads, tx.init(grads))
    # optax 0.2.8 fails even without decay, with an error about pytree structure or types.
    with pytest.raises((TypeError, ValueError)) as failure:
        optax.novograd(0.1).update(grads, optax.novograd(0.1).init(grads))
    assert "weight decay" not in str(failure.value)


@pytest.mark.parametrize("decay", [0.0, 1e-3])
def test_built_inside_jit_with_python_hyperparameters(decay):
    """The engine builds each replica's optimizer inside its jitted step, where even a
    constant like `jnp.asarray(0.0)` is a tracer: construction must not need a concrete bool."""
    params = {"w": jnp.linspace(-1.0, 1.0, 6), "b": jnp.ones(2)}
    grads = jax.tree.map(lambda p: 0.3 * p + 0.1, params)

    def step(params, grads):
        tx = ro.novograd(0.1, weight_decay=decay)
        return tx.update(grads, tx.init(params), params)[0]

    inside, outside = jax.jit(step)(params, grads), step(params, grads)
    for a, b in zip(jax.tree.leaves(inside), jax.tree.leaves(outside), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_traced_hyperparameters_keep_state_dtypes_under_vmap_and_scan():
    params = _params(jnp.bfloat16)

    def replica(b1, lr, decay):
        tx = ro.novograd(lr, b1=b1, weight_decay=decay)
        return _trajectory(tx, params, 5)

    updates = jax.vmap(replica)(
        jnp.array([0.5, 0.9]), jnp.array([0.1, 0.01]), jnp.array([0.0, 1e-3])
    )
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
    alone = replica(0.9, 0.01, 1e-3)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(alone), strict=True):
        np.testing.assert_allclose(
            np.asarray(a[1], np.float32), np.asarray(b, np.float32), rtol=2e-2, atol=1e-4
        )


# ----------------------------------------------------------------------------- variants


def test_grad_averaging_scales_the_new_term():
    b1, eps, decay = 0.8, 1e-6, 0.1
    tx = ro.scale_by_novograd(b1=b1, eps=eps, weight_decay=decay, grad_averaging=True)
    params = {"w": jnp.array([1.0, 1.0])}
    grads = {"w": jnp.array([3.0, 4.0])}
    state = tx.init(params)
    u1, state = tx.update(grads, state, params)
    term = grads["w"] / (5 + eps) + decay * params["w"]
    np.testing.assert_allclose(u1["w"], (1 - b1) * term, rtol=1e-6)
    u2, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(u2["w"], b1 * (1 - b1) * term + (1 - b1) * term, rtol=1e-6)


def test_decoupled_weight_decay_stays_out_of_the_momentum():
    b1, eps, decay = 0.9, 1e-6, 0.1
    tx = ro.scale_by_novograd(b1=b1, eps=eps, weight_decay=decay, decoupled_weight_decay=True)
    params = {"w": jnp.array([1.0, -1.0])}
    grads = {"w": jnp.array([3.0, 4.0])}
    state = tx.init(params)
    u1, state = tx.update(grads, state, params)
    normalized = grads["w"] / (5 + eps)
    np.testing.assert_allclose(state.mu["w"], normalized, rtol=1e-6)
    np.testing.assert_allclose(u1["w"], normalized + decay * params["w"], rtol=1e-6)
    u2, state = tx.update(grads, state, params)
    np.testing.assert_allclose(state.mu["w"], (1 + b1) * normalized, rtol=1e-6)
    np.testing.assert_allclose(u2["w"], (1 + b1) * normalized + decay * params["w"], rtol=1e-6)


def test_openseq2seq_preset_puts_eps_inside_the_root():
    assert ro.OPENSEQ2SEQ_BETAS == (0.95, 0.98)
    params = _params()
    preset = _trajectory(ro.novograd_openseq2seq(0.01, weight_decay=1e-3), params, 10)
    explicit = _trajectory(
        ro.novograd(0.01, b1=0.95, b2=0.98, eps=0.0, eps_root=1e-8, weight_decay=1e-3), params, 10
    )
    for a, b in zip(jax.tree.leaves(preset), jax.tree.leaves(explicit), strict=True):
        np.testing.assert_array_equal(a, b)
    tx = ro.novograd_openseq2seq(1.0)
    grads = {"w": jnp.array([3.0, 4.0])}
    updates, _ = tx.update(grads, tx.init(grads), grads)
    np.testing.assert_allclose(updates["w"], -grads["w"] / math.sqrt(25 + 1e-8), rtol=1e-6)


# ----------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ro.novograd(0.1, b1=1.0), r"b1 must be in \[0, 1\), got 1.0"),
        (lambda: ro.novograd(0.1, b2=-0.1), r"b2 must be in \[0, 1\), got -0.1"),
        (lambda: ro.novograd(0.1, eps=-1e-6), "eps must be >= 0, got -1e-06"),
        (lambda: ro.novograd(0.1, weight_decay=-1.0), "weight_decay must be >= 0, got -1.0"),
        (lambda: ro.novograd(-0.1), "learning_rate must be >= 0, got -0.1"),
        (lambda: ro.scale_by_novograd(eps_root=-1.0), "eps_root must be >= 0, got -1.0"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_trees_dtypes_wrappers_and_extra_arguments():
    tx = ro.novograd(0.1, weight_decay=1e-3)
    params = {"none": None, "empty": jnp.zeros((0, 3)), "s": jnp.asarray(1.0), "w": jnp.ones(2)}
    grads = {"none": None, "empty": jnp.zeros((0, 3)), "s": jnp.asarray(0.5), "w": jnp.ones(2)}
    updates, _ = tx.update(grads, tx.init(params), params, loss=3.0)
    assert updates["none"] is None and updates["empty"].shape == (0, 3)
    assert tx.update({}, tx.init({}), {})[0] == {}
    bf16 = {"w": jnp.ones(3, jnp.bfloat16)}
    updates, _ = ro.novograd(jnp.float32(0.1)).update(bf16, ro.novograd(0.1).init(bf16), bf16)
    assert updates["w"].dtype == jnp.bfloat16
    multi = optax.MultiSteps(ro.novograd(0.1), every_k_schedule=2)
    state = multi.init(params)
    first, state = multi.update(grads, state, params)
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(first))
    second, _ = multi.update(grads, state, params)
    assert bool(jnp.any(second["w"] != 0))
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _params())
    jax.eval_shape(tx.init, abstract)


def test_state_is_half_of_adams():
    params = {f"layer{i}": jnp.zeros((50, 50)) for i in range(5)}
    novograd_numbers = sum(x.size for x in jax.tree.leaves(ro.novograd(0.1).init(params)))
    adam_numbers = sum(x.size for x in jax.tree.leaves(optax.adam(0.1).init(params)))
    assert novograd_numbers <= 0.55 * adam_numbers


def test_converges_on_rosenbrock():
    def rosenbrock(x):
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2

    tx = ro.novograd(optax.cosine_decay_schedule(0.05, 3000), b1=0.9, b2=0.25)

    @jax.jit
    def run(x):
        def body(carry, _):
            x, state = carry
            updates, state = tx.update(jax.grad(rosenbrock)(x), state, x)
            return (optax.apply_updates(x, updates), state), None

        return jax.lax.scan(body, (x, tx.init(x)), None, length=3000)[0][0]

    x = run(jnp.array([-1.0, 1.0]))
    assert float(rosenbrock(x)) < 1e-2
