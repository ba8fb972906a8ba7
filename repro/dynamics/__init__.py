"""SGD dynamics simulations (Mori et al. 2022): minibatch SGD on least squares with many
replicas in one compiled program (`linear_sgd`), the power-law fits (`power_law`) and the run
stage that writes config, records and summary like a training run (`run`)."""

from repro.dynamics.run import describe, run_dynamics, validate

__all__ = ["describe", "run_dynamics", "validate"]
