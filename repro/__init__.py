"""repro: reproductions of gradient-noise and NovoGrad results in JAX/Flax."""

__version__ = "0.1.0"
