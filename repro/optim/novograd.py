r"""NovoGrad (Ginsburg et al., 2019): layer-wise second moments, normalized momentum.

For every leaf (a "layer") :math:`\ell` with gradient :math:`g_t` and weights :math:`w_t`,
counting updates :math:`t = 1, 2, \dots`:

.. math::

   v_1 = \lVert g_1 \rVert_2^2,\qquad
   v_t = \beta_2 v_{t-1} + (1 - \beta_2) \lVert g_t \rVert_2^2,

.. math::

   m_1 = c\,\Big(\frac{g_1}{\sqrt{v_1 + \epsilon_r} + \epsilon} + \lambda_1 w_1\Big),\qquad
   m_t = \beta_1 m_{t-1}
         + c\,\Big(\frac{g_t}{\sqrt{v_t + \epsilon_r} + \epsilon} + \lambda_t w_t\Big),

and the update is :math:`u_t = m_t` (:func:`scale_by_novograd`), then
:math:`-\alpha_t u_t` (:func:`novograd`). :math:`c = 1` by default and :math:`c = 1 - \beta_1`
with ``grad_averaging=True``. With ``decoupled_weight_decay=True`` the decay leaves the
momentum: :math:`m_t = \beta_1 m_{t-1} + c\,g_t / (\sqrt{v_t + \epsilon_r} + \epsilon)` and
:math:`u_t = m_t + \lambda_t w_t` (as AdamW does for Adam). The second moment is one scalar
per leaf, so the state holds :math:`P` + (number of leaves) numbers, against :math:`2P` for
Adam. There is no bias correction.

**Identical to optax 0.2.8** for the shared options (``grad_averaging=False``, coupled
decay, constant ``weight_decay``, ``params`` given): same state type
(``optax.ScaleByNovogradState``), same formulas evaluated the same way, so the updates agree
bit for bit over many steps (tested for float32, bfloat16 and float16). The first step is
chosen by the step counter, not by testing :math:`v = 0`, so a layer whose gradient is
exactly zero does not restart its averages (several PyTorch ports re-initialise then).

**Fixed relative to optax 0.2.8:**

* ``weight_decay`` may be a schedule (``count -> lambda``, with ``count`` the number of
  updates already made); optax's signature allows one but it raises ``TypeError``;
* ``params=None`` raises a clear ``ValueError`` only when the weight decay needs params (a
  nonzero, traced or scheduled ``weight_decay``); optax raises a cryptic ``TypeError`` even
  with zero decay;
* a zero denominator (``eps = eps_root = 0`` and a zero gradient) gives a zero update, not
  NaN (optax: 0/0);
* the state keeps its dtypes when hyperparameters are traced float32 arrays (optax promotes
  bf16 moments to float32, which breaks a ``lax.scan`` carry), and :func:`novograd` returns
  updates in the gradients' dtype;
* out-of-range hyperparameters raise ``ValueError`` at construction.

**Differences between reference implementations** (all expressible here):

===================  ======================  =====================  ==========================
                     optax 0.2.8             OpenSeq2Seq (NVIDIA)   apex ``FusedNovoGrad``
===================  ======================  =====================  ==========================
betas                0.9, 0.25               0.95, 0.98             0.9, 0.999 (NeMo: 0.95,
                                                                    0.25)
eps                  outside root (1e-6 in   inside root (1e-8)     outside root (1e-8)
                     ``novograd``)
grad averaging       no                      option (off)           option (on)
weight decay         coupled (in momentum)   coupled                decoupled by default
                                                                    (``reg_inside_moment``)
bias correction      no                      no                     yes (default)
first step           :math:`v_1=\|g_1\|^2`   :math:`v_1=\|g_1\|^2`  same, or 0 (``init_zero``)
===================  ======================  =====================  ==========================

* OpenSeq2Seq: ``novograd(lr, b1=0.95, b2=0.98, eps=0.0, eps_root=1e-8)`` -- the preset
  :func:`novograd_openseq2seq` (the original authors' code and the Jasper paper's betas).
* apex with ``reg_inside_moment=False`` also moves the *normalisation* out of the momentum
  (:math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`, :math:`u_t = m_t/\sqrt{v_t} + \lambda w_t`),
  an Adam-like variant that is not NovoGrad's published rule and is not offered; its
  bias correction is not offered either. ``decoupled_weight_decay=True`` decouples only the
  decay, keeping the paper's normalized momentum.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import ScalarOrSchedule

from repro.optim.transforms import keep_update_dtype, scale_by_learning_rate
from repro.validation import check_in_range, check_nonnegative, is_checkable

__all__ = [
    "OPENSEQ2SEQ_BETAS",
    "novograd",
    "novograd_openseq2seq",
    "scale_by_novograd",
]

OPENSEQ2SEQ_BETAS = (0.95, 0.98)
"""Betas of NVIDIA's original NovoGrad (OpenSeq2Seq) and of the Jasper paper."""

_NO_PARAMS = (
    "scale_by_novograd needs params for weight decay (weight_decay={!r}): "
    "call update(updates, state, params)"
)


def _is_concrete_zero(value: Any) -> bool:
    if callable(value) or not is_checkable(value):
        return False
    return bool(np.all(np.asarray(value) == 0))


def _cast_tree_like(tree: Any, like: Any) -> Any:
    return jax.tree.map(
        lambda x, y: None if x is None else x.astype(y.dtype),
        tree,
        like,
        is_leaf=lambda x: x is None,
    )


def _squared_norm(g: jax.Array) -> jax.Array:
    return jnp.linalg.norm(g) ** 2


# Both branches of each of scale_by_novograd's conds are cast to the state's dtypes: a traced
# float32 hyperparameter must not promote a bf16 state (cond needs equal branch types, and a
# lax.scan carry needs a fixed type).
def _first_nu(grads: Any, nu: Any) -> Any:
    """v_1 = ||g_1||^2 per leaf."""
    return jax.tree.map(lambda g, n: _squared_norm(g).astype(n.dtype), grads, nu)


def _next_nu(grads: Any, nu: Any, *, b2: Any) -> Any:
    """v_t = b2 v_{t-1} + (1 - b2) ||g_t||^2 per leaf."""
    new = optax.tree.update_moment(jax.tree.map(_squared_norm, grads), nu, b2, 1)
    return _cast_tree_like(new, nu)


def _new_term(
    grads: Any, params: Any, nu: Any, *, eps: Any, eps_root: Any, decay: Any, scale: Any
) -> Any:
    """c (g_t / (sqrt(v_t + eps_root) + eps) + lambda_t w_t) per leaf; ``decay=None`` leaves
    out the weight-decay term, ``scale=None`` means c = 1."""

    def term(g, p, n):
        denom = jnp.sqrt(n + eps_root) + eps
        # A zero denominator means a zero gradient (v_t = 0): give 0, not 0/0.
        term = g / jnp.where(denom > 0, denom, jnp.ones_like(denom))
        if decay is not None:
            term = term + decay * p
        if scale is not None:
            term = scale * term
        return term

    if params is None:
        return jax.tree.map(lambda g, n: term(g, None, n), grads, nu)
    return jax.tree.map(term, grads, params, nu)


def scale_by_novograd(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.25,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    *,
    grad_averaging: bool = False,
    decoupled_weight_decay: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""NovoGrad's normalized momentum (see the module docstring for the math).

    .. math::

       v_t = \beta_2 v_{t-1} + (1-\beta_2)\lVert g_t\rVert^2\ (v_1 = \lVert g_1\rVert^2),\quad
       m_t = \beta_1 m_{t-1} + c\Big(\frac{g_t}{\sqrt{v_t+\epsilon_r}+\epsilon}
             + \lambda_t w_t\Big),\quad u_t = m_t

    per leaf; :math:`c = 1 - \beta_1` if ``grad_averaging`` else 1; with
    ``decoupled_weight_decay`` the :math:`\lambda_t w_t` term moves from :math:`m_t` to
    :math:`u_t`.

    Args:
      b1: momentum decay, in ``[0, 1)``.
      b2: decay of the layer-wise squared-norm average, in ``[0, 1)``.
      eps: added to :math:`\sqrt{v}` (outside the root), ``>= 0``; 1e-8 as in optax.
      eps_root: added to :math:`v` inside the root, ``>= 0``.
      weight_decay: :math:`\lambda`, ``>= 0``; a constant, a (traced) array or a schedule
        ``count -> lambda`` (``count`` = updates already made).
      mu_dtype: dtype of the momentum (default: that of ``params``), as in optax.
      grad_averaging: scale the new term by :math:`1 - \beta_1` (OpenSeq2Seq/apex option).
      decoupled_weight_decay: add :math:`\lambda_t w_t` to the update, not to the momentum.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state ``optax.ScaleByNovogradState``.
    """
    check_in_range("b1", b1, 0.0, 1.0)
    check_in_range("b2", b2, 0.0, 1.0)
    check_nonnegative("eps", eps)
    check_nonnegative("eps_root", eps_root)
    check_nonnegative("weight_decay", weight_decay)
    mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)
    decay_is_zero = _is_concrete_zero(weight_decay)

    def init_fn(params: Any) -> optax.ScaleByNovogradState:
        mu = optax.tree.zeros_like(params, dtype=mu_dtype)
        nu = jax.tree.map(lambda p: jnp.asarray(0.0, dtype=p.dtype), params)
        return optax.ScaleByNovogradState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None and not decay_is_zero:
            raise ValueError(_NO_PARAMS.format(weight_decay))
        decay = weight_decay(state.count) if callable(weight_decay) else weight_decay
        coupled_decay = None if decay_is_zero or decoupled_weight_decay else decay
        new_term = functools.partial(
            _new_term,
            eps=eps,
            eps_root=eps_root,
            decay=coupled_decay,
            scale=(1 - b1) if grad_averaging else None,
        )

        def init_mu(grads, params, mu, nu):
            return _cast_tree_like(new_term(grads, params, nu), mu)

        def update_mu(grads, params, mu, nu):
            new = jax.tree.map(
                lambda m, u: None if m is None else b1 * m + u,
                mu,
                new_term(grads, params, nu),
                is_leaf=lambda x: x is None,
            )
            return _cast_tree_like(new, mu)

        count_inc = optax.safe_increment(state.count)
        first = count_inc == 1
        nu = jax.lax.cond(first, _first_nu, functools.partial(_next_nu, b2=b2), updates, state.nu)
        mu = jax.lax.cond(first, init_mu, update_mu, updates, params, state.mu, nu)
        new_updates = mu
        if decoupled_weight_decay and not decay_is_zero:
            new_updates = jax.tree.map(
                lambda m, p: None if m is None else m + decay * p,
                mu,
                params,
                is_leaf=lambda x: x is None,
            )
        return new_updates, optax.ScaleByNovogradState(count=count_inc, mu=mu, nu=nu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def novograd(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.25,
    eps: jax.typing.ArrayLike = 1e-6,
    eps_root: jax.typing.ArrayLike = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    *,
    grad_averaging: bool = False,
    decoupled_weight_decay: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""NovoGrad optimizer: :math:`w_{t+1} = w_t - \alpha_t m_t` (:func:`scale_by_novograd`).

    ``chain(scale_by_novograd(b1, b2, eps, eps_root, weight_decay, ...),
    scale_by_learning_rate(learning_rate))`` with optax's defaults (``eps=1e-6`` here,
    ``1e-8`` in :func:`scale_by_novograd`, as in optax). Identical to ``optax.novograd`` for
    the shared options; updates have the gradients' dtype (optax returns the momentum's
    dtype, so a float32 ``mu_dtype`` with bf16 gradients gives float32 updates there). See
    the module docstring for the math, the fixes and how the reference implementations
    differ.
    """
    check_nonnegative("learning_rate", learning_rate)
    return keep_update_dtype(
        optax.chain(
            scale_by_novograd(
                b1,
                b2,
                eps,
                eps_root,
                weight_decay,
                mu_dtype,
                grad_averaging=grad_averaging,
                decoupled_weight_decay=decoupled_weight_decay,
            ),
            scale_by_learning_rate(learning_rate),
        )
    )


def novograd_openseq2seq(
    learning_rate: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    grad_averaging: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""NovoGrad as in NVIDIA's original code (OpenSeq2Seq) and the Jasper paper.

    :func:`novograd` with :math:`\beta_1 = 0.95`, :math:`\beta_2 = 0.98` and
    :math:`\epsilon = 10^{-8}` *inside* the root (``eps=0, eps_root=1e-8``), coupled decay,
    no grad averaging by default. Jasper used ``learning_rate`` 0.02 with polynomial decay
    (power 2) and ``weight_decay`` 0.001.
    """
    b1, b2 = OPENSEQ2SEQ_BETAS
    return novograd(
        learning_rate,
        b1=b1,
        b2=b2,
        eps=0.0,
        eps_root=1e-8,
        weight_decay=weight_decay,
        grad_averaging=grad_averaging,
    )
