"""Small helpers shared by the optimizers in ``repro.optim``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from repro.validation import check_nonnegative

__all__ = ["keep_update_dtype", "scale_by_learning_rate"]


def _cast_like(new: Any, old: Any) -> Any:
    def cast(n: Any, o: Any) -> Any:
        if n is None or o is None:
            return n
        dtype = jnp.asarray(o).dtype
        return jnp.asarray(n).astype(dtype) if jnp.asarray(n).dtype != dtype else n

    return jax.tree.map(cast, new, old, is_leaf=lambda x: x is None)


def keep_update_dtype(
    inner: optax.GradientTransformation,
) -> optax.GradientTransformationExtraArgs:
    r"""Wrap ``inner`` so each output update leaf has its input update leaf's dtype.

    :math:`u^{out} = \mathrm{cast}_{\mathrm{dtype}(u^{in})}(\mathrm{inner}(u^{in}))`.
    Fixes optax's promotion of, e.g., bf16 updates to float32 when a hyperparameter is a
    float32 ``jnp`` array (a Python float is weakly typed and does not promote).
    """
    inner = optax.with_extra_args_support(inner)

    def update_fn(updates, state, params=None, **extra_args):
        new_updates, new_state = inner.update(updates, state, params, **extra_args)
        return _cast_like(new_updates, updates), new_state

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)


def scale_by_learning_rate(
    learning_rate: optax.ScalarOrSchedule, *, flip_sign: bool = True
) -> optax.GradientTransformationExtraArgs:
    r"""``optax.scale_by_learning_rate`` that keeps each update's dtype.

    :math:`u_t \leftarrow -\alpha_t u_t` (:math:`+\alpha_t u_t` with ``flip_sign=False``);
    :math:`\alpha_t` is a constant or ``learning_rate(count)`` with ``count`` the number of
    updates already made. A negative constant ``learning_rate`` raises ``ValueError``.
    """
    check_nonnegative("learning_rate", learning_rate)
    return keep_update_dtype(optax.scale_by_learning_rate(learning_rate, flip_sign=flip_sign))
