r"""SGD with momentum and coupled (L2) weight decay, as ``torch.optim.SGD`` computes it.

.. math:: d_t = g_t + \lambda w_t,\qquad b_t = \mu\, b_{t-1} + d_t\ (b_0 = 0),\qquad
          w_{t+1} = w_t - \eta_t\, b_t

(``nesterov=True``: :math:`w_{t+1} = w_t - \eta_t (d_t + \mu b_t)`). The CIFAR-10 / SVHN VGG
runs of Wu et al. (2020) use it with :math:`\mu = 0.9`, :math:`\lambda = 5\cdot 10^{-4}`.
``optax.sgd`` has no weight decay; this is ``chain(add_decayed_weights(wd), sgd(...))``.
"""

from __future__ import annotations

from typing import Any

import optax

from repro.validation import check_in_range, check_nonnegative

__all__ = ["sgd_weight_decay"]


def sgd_weight_decay(
    learning_rate: Any,
    momentum: Any = 0.9,
    weight_decay: Any = 5e-4,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """The update rule of the module docstring; ``momentum`` in [0, 1), ``weight_decay >= 0``."""
    check_in_range("momentum", momentum, 0.0, 1.0)
    check_nonnegative("weight_decay", weight_decay)
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov),
    )
