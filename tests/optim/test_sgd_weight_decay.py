"""repro.optim.sgd.sgd_weight_decay against torch.optim.SGD's update written out by hand."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from repro.optim.sgd import sgd_weight_decay


@pytest.mark.parametrize("nesterov", [False, True])
def test_three_steps_match_torch_sgd_by_hand(nesterov):
    lr, mu, wd = 0.1, 0.9, 5e-4
    w = np.array([1.0, -2.0, 0.5])
    grads = [np.array([0.3, 0.1, -0.2]), np.array([-0.1, 0.4, 0.0]), np.array([0.2, 0.2, 0.2])]
    tx = sgd_weight_decay(lr, mu, wd, nesterov)
    params = jnp.asarray(w, jnp.float32)
    state = tx.init(params)
    buf = np.zeros(3)
    for g in grads:
        d = g + wd * w  # torch: d_p = grad + weight_decay * p
        buf = mu * buf + d  # buf = momentum * buf + d_p (dampening 0; buf_1 = d_1)
        w = w - lr * ((d + mu * buf) if nesterov else buf)
        updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(np.asarray(params), w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"momentum": 1.0}, "momentum must be in [0, 1), got 1.0"),
        ({"weight_decay": -1e-4}, "weight_decay must be >= 0, got -0.0001"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as error:
        sgd_weight_decay(0.1, **kwargs)
    assert str(error.value) == message
