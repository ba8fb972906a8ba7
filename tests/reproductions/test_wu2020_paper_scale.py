"""Wu et al. 2020 paper-scale configs (SVHN / CIFAR-10 VGG-11, CIFAR-100 ResNet-18) compose,
run the authors' schedule, and build their model, optimizer and noise sampler (TFDS data is
not available offline: its shapes are the catalogue's, repro/data/sources.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from repro.data.sources import KNOWN_IMAGE_SHAPES
from repro.engine.experiment import build_network
from repro.engine.instantiate import call_target
from repro.engine.optimizers import NOISE_ENGINE_KEYS, UpdateRule
from repro.engine.run_spec import run_spec
from repro.models import count_params
from repro.train import CONFIG_DIR

# cell -> (training-set size, batch, classes, parameters of the model: VGG-11 as in
# kuangliu/pytorch-cifar; ResNet-18 as torchvision's, 11,689,512 - 900 x 513 with 100 classes)
CELLS = {
    "svhn_sgd": (25000, 100, 10, 9_231_114),
    "svhn_gd": (25000, 25000, 10, 9_231_114),
    "svhn_fisher": (25000, 25000, 10, 9_231_114),
    "cifar10_sgd": (50000, 100, 10, 9_231_114),
    "cifar100_sgd_b500": (50000, 500, 100, 11_227_812),
    "cifar100_b2000": (50000, 2000, 100, None),
    "cifar100_b2000_ghost": (50000, 2000, 100, None),
}


def _compose(cell: str) -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment=wu2020/paper/{cell}"])
    GlobalHydra.instance().clear()
    return cfg


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_paper_cell_composes_with_the_authors_schedule_and_builds(cell):
    n, batch, classes, params = CELLS[cell]
    cfg = _compose(cell)
    spec = run_spec(cfg)  # validates the whole config
    plain = OmegaConf.to_container(cfg, resolve=True)
    trainer, schedule = plain["trainer"], plain["optimizer"]["schedule"]
    steps = n // batch
    assert trainer["batch_size"] == batch and trainer["epochs"] * steps == 100_000
    assert schedule["name"] == "piecewise" and schedule["factors"] == [0.1, 0.01]
    assert [b * steps for b in schedule["boundaries_epochs"]] == [40_000, 60_000]
    assert plain["optimizer"]["learning_rate"] == 0.1

    rule = UpdateRule(plain["optimizer"], plain["noise"], None, trainer["epochs"] * steps, steps)
    tx = rule.transformation({}, jax.random.key(0))
    assert rule.examples_per_step(batch) == batch
    shape = KNOWN_IMAGE_SHAPES[plain["data"]["name"]]
    model = build_network(spec.plain["model"], classes)
    x = jnp.zeros((2, *shape))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    logits = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    assert logits.shape == (2, classes)
    if params is not None:
        assert count_params(variables["params"]) == params
    jax.eval_shape(tx.init, variables["params"])


def test_cifar10_uses_momentum_and_weight_decay_and_ghost_batches_match_b500():
    cifar10 = OmegaConf.to_container(_compose("cifar10_sgd"), resolve=True)["optimizer"]
    assert (cifar10["momentum"], cifar10["weight_decay"]) == (0.9, 5e-4)
    ghost = OmegaConf.to_container(_compose("cifar100_b2000_ghost"), resolve=True)["noise"]
    sampler = call_target(ghost, exclude=NOISE_ENGINE_KEYS)
    assert ghost["ghost_size"] == 500
    assert sampler.effective_batch_size(2000) == pytest.approx(500, rel=1e-12)
    fisher = OmegaConf.to_container(_compose("svhn_fisher"), resolve=True)["noise"]
    assert call_target(fisher, exclude=NOISE_ENGINE_KEYS).effective_batch_size(
        25000
    ) == pytest.approx(100, rel=1e-12)
