"""Jasper-mini train step: JAX (jitted) vs the same model in PyTorch eager on CPU, in one run.

    .venv/bin/python scripts/benchmark_jasper.py [--batch 16 32] [--steps 10] [--rounds 5]
        [--warmup 2] [--impls matmul xla] [--torch-threads 2 1] [--json out.json]

Needs the optional PyTorch baseline: ``pip install -e ".[bench]"`` (torch==2.13.0, CPU).

Model: ``repro.models.Jasper`` configured as ``conf/experiment/jasper2019/protocol.yaml``'s
``model:`` node (read from that file, over the defaults of conf/model/jasper.yaml): 5x3,
block residuals, filters [32, 48, 48, 64, 64], kernels [11, 13, 15, 17, 19], prologue 32 k11
stride 2, epilogue [96, 128] kernels [21, 1] dilations [2, 1], dropout 0.1, 64 input
features, 29 outputs (824,477 parameters). The PyTorch model is the same architecture in
``torch.nn`` (channels first): ``Conv1d`` without bias (symmetric padding d (k - 1) / 2) ->
``BatchNorm1d`` -> ReLU -> Dropout, the residual ``BN(conv1x1(block input))`` added before the
last sub-block's ReLU, and a 1x1 ``Conv1d`` with bias for the logits. Its batch norm is plain
(unmasked); the inputs have no padding, where the masked batch norm of the JAX model is the
same function. One difference that does not touch the timed work: torch updates the running
variance with the unbiased batch variance, the JAX model with the biased one.

Train step, both frameworks: forward in training mode (batch statistics, dropout), CTC loss
(blank 0; JAX ``optax.ctc_loss`` per utterance, batch mean, as ``repro.engine.tasks`` does;
torch ``nnf.ctc_loss(log_softmax(logits), ..., reduction="sum") / B``), backward, and a
NovoGrad update with Jasper's settings (``repro.optim.novograd(0.02, b1=0.95, b2=0.98,
weight_decay=0.001)``, eps 1e-6 outside the root, coupled decay). PyTorch has no NovoGrad:
``TorchNovoGrad`` below is the same per-tensor math (repro/optim/novograd.py) with
``torch._foreach_*`` ops, as torch.optim's own optimizers are written. The JAX step (loss,
gradient, optimizer and batch-norm update) is one jitted function, called from Python once per
step, with the XLA convolutions (``conv_impl="xla"``: at top level XLA:CPU canonicalizes the
backward convs) and with im2col (``conv_impl="matmul"``, the CPU default of ``auto``, chosen
for the engine's compiled loops), each a row of its own.

Inputs: ``--batch`` utterances (16 and 32 by default) of T = 200 frames (2 s at a 10 ms hop) x
64 features, N(0, 1), no padding; labels of length 30 drawn uniformly from 1..28.

Timing: compilation of each JAX step is timed separately (``lower().compile()``), then
``--warmup`` steps of every contender, then ``--rounds`` rounds that alternate the contenders,
each round ``--steps`` steps (JAX waits with ``block_until_ready`` at the end of the round;
torch on CPU is synchronous). Printed: median ms per step over rounds, examples/s, and the
median over rounds of the within-round ratio torch / jax (> 1: JAX faster; the goal is
>= 1.0), per torch row and against the faster torch row of each round ("best torch"). JAX
uses XLA's default CPU thread pool (all cores); torch runs one row per ``--torch-threads``
entry, by default ``os.cpu_count()`` (``torch.set_num_threads``) and 1: on a shared, loaded
2-core machine torch's OpenMP threads wait on each other at every op and can run 10-40x
slower than one thread (scripts/benchmark_pipeline.py saw the same), so the goal is judged
against the best torch row.

Numerics, checked once before the timing, with the JAX initial weights copied into torch
(kernel [k, C_in, C_out] -> weight [C_out, C_in, k]; batch-norm scale/bias/running stats):
eval-mode logits of the same input, max abs difference; and the training-mode loss and
gradients with dropout off (batch statistics), max abs and max relative (to each tensor's
largest gradient) differences; and the optimizers: 3 NovoGrad updates of the same gradients.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import OmegaConf

try:
    import torch
    from torch.nn import functional as nnf
except ImportError as error:  # the optional baseline
    raise SystemExit('needs PyTorch: pip install -e ".[bench]" (torch==2.13.0)') from error

from repro.models import Jasper
from repro.optim import novograd

ROOT = Path(__file__).resolve().parents[1]
FRAMES, FEATURES, LABEL_LEN, OUTPUTS = 200, 64, 30, 29
LR, B1, B2, WEIGHT_DECAY, EPS = 0.02, 0.95, 0.98, 0.001, 1e-6


def protocol_model(**overrides: Any) -> Jasper:
    """Jasper as conf/experiment/jasper2019/protocol.yaml's ``model:`` configures it."""
    cfg = OmegaConf.merge(
        OmegaConf.load(ROOT / "conf/model/jasper.yaml"),
        OmegaConf.load(ROOT / "conf/experiment/jasper2019/protocol.yaml").model,
    )
    kwargs = OmegaConf.to_container(cfg)
    del kwargs["_target_"]
    kwargs["num_outputs"] = OUTPUTS
    kwargs.update(overrides)
    return Jasper(**kwargs)


# ----------------------------------------------------------------------------- PyTorch model


class TorchConvBN(torch.nn.Module):
    def __init__(
        self, c_in: int, c_out: int, k: int, *, stride: int = 1, dilation: int = 1, bn: Any
    ) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(
            c_in,
            c_out,
            k,
            stride=stride,
            padding=dilation * (k - 1) // 2,
            dilation=dilation,
            bias=False,
        )
        # flax momentum m (ra <- m ra + (1 - m) stat) is torch momentum 1 - m.
        self.norm = torch.nn.BatchNorm1d(c_out, eps=bn.bn_epsilon, momentum=1 - bn.bn_momentum)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(h))


class TorchJasper(torch.nn.Module):
    """The architecture of ``repro.models.Jasper`` (block residuals, not separable), [B, T, F]
    in, logits [B, T', V+1] out; module names follow the flax parameter names."""

    def __init__(self, m: Jasper, features: int) -> None:
        super().__init__()
        assert m.residual == "block" and not m.separable and not any(m.spec_augment)
        layers: dict[str, torch.nn.Module] = {}
        layers["prologue"] = TorchConvBN(
            features, m.prologue_filters, m.prologue_kernel, stride=m.stride, bn=m
        )
        c = m.prologue_filters
        self.block_rates = []
        for b in range(m.blocks):
            f, k = m.filters[b], m.kernel_sizes[b]
            layers[f"block{b}_residual0"] = TorchConvBN(c, f, 1, bn=m)
            for r in range(m.repeats):
                layers[f"block{b}_sub{r}"] = TorchConvBN(c if r == 0 else f, f, k, bn=m)
            c = f
            self.block_rates.append(m.dropout[b])
        for i, (f, k, d) in enumerate(
            zip(m.epilogue_filters, m.epilogue_kernels, m.epilogue_dilations, strict=True)
        ):
            layers[f"epilogue{i}"] = TorchConvBN(c, f, k, dilation=d, bn=m)
            c = f
        layers["output"] = torch.nn.Conv1d(c, m.num_outputs, 1, bias=True)
        self.layers = torch.nn.ModuleDict(layers)
        self.blocks, self.repeats = m.blocks, m.repeats
        self.epilogue = len(m.epilogue_filters)
        self.prologue_drop = torch.nn.Dropout(m.prologue_dropout)
        self.block_drops = torch.nn.ModuleList(torch.nn.Dropout(p) for p in self.block_rates)
        self.epilogue_drop = torch.nn.Dropout(m.epilogue_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = self.layers
        h = self.prologue_drop(nnf.relu(L["prologue"](x.transpose(1, 2))))
        for b in range(self.blocks):
            residual = L[f"block{b}_residual0"](h)
            for r in range(self.repeats):
                h = L[f"block{b}_sub{r}"](h)
                if r == self.repeats - 1:
                    h = h + residual
                h = self.block_drops[b](nnf.relu(h))
        for i in range(self.epilogue):
            h = self.epilogue_drop(nnf.relu(L[f"epilogue{i}"](h)))
        return L["output"](h).transpose(1, 2)


def load_jax_variables(net: TorchJasper, variables: Any) -> None:
    """Copy flax params and batch stats into the torch model (in place)."""
    params, stats = variables["params"], variables["batch_stats"]
    with torch.no_grad():
        for name, layer in net.layers.items():
            if name == "output":
                layer.weight.copy_(torch.tensor(np.asarray(params[name]["kernel"]).T[..., None]))
                layer.bias.copy_(torch.tensor(np.asarray(params[name]["bias"])))
                continue
            kernel = np.asarray(params[name]["conv"]["kernel"])  # [k, C_in, C_out]
            layer.conv.weight.copy_(torch.from_numpy(kernel.transpose(2, 1, 0).copy()))
            layer.norm.weight.copy_(torch.tensor(np.asarray(params[name]["norm"]["scale"])))
            layer.norm.bias.copy_(torch.tensor(np.asarray(params[name]["norm"]["bias"])))
            layer.norm.running_mean.copy_(torch.tensor(np.asarray(stats[name]["norm"]["mean"])))
            layer.norm.running_var.copy_(torch.tensor(np.asarray(stats[name]["norm"]["var"])))


def torch_grads_as_jax_tree(net: TorchJasper) -> dict[str, Any]:
    """The torch gradients in the flax parameter tree's layout (numpy)."""
    tree: dict[str, Any] = {}
    for name, layer in net.layers.items():
        if name == "output":
            tree[name] = {
                "kernel": layer.weight.grad.numpy()[..., 0].T,
                "bias": layer.bias.grad.numpy(),
            }
        else:
            tree[name] = {
                "conv": {"kernel": layer.conv.weight.grad.numpy().transpose(2, 1, 0)},
                "norm": {
                    "scale": layer.norm.weight.grad.numpy(),
                    "bias": layer.norm.bias.grad.numpy(),
                },
            }
    return tree


def set_torch_grads(net: TorchJasper, tree: Any) -> None:
    """Set the torch gradients from a flax-layout gradient tree (the inverse of the above)."""

    def t(a: Any) -> torch.Tensor:
        return torch.tensor(np.asarray(a))

    for name, layer in net.layers.items():
        g = jax.tree.map(np.asarray, tree[name])
        if name == "output":
            layer.weight.grad, layer.bias.grad = t(g["kernel"].T[..., None]), t(g["bias"])
        else:
            layer.conv.weight.grad = t(g["conv"]["kernel"].transpose(2, 1, 0))
            layer.norm.weight.grad, layer.norm.bias.grad = (
                t(g["norm"]["scale"]),
                t(g["norm"]["bias"]),
            )


class TorchNovoGrad:
    """NovoGrad per tensor (repro/optim/novograd.py, coupled decay, no grad averaging):
    v_1 = |g_1|^2, v_t = b2 v_{t-1} + (1 - b2) |g_t|^2; m_1 = g_1 / (sqrt(v_1) + eps) + wd w,
    m_t = b1 m_{t-1} + g_t / (sqrt(v_t) + eps) + wd w; w <- w - lr m_t."""

    def __init__(
        self, params: Any, lr: float, b1: float, b2: float, eps: float, weight_decay: float
    ) -> None:
        self.params = list(params)
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, b1, b2, eps, weight_decay
        self.count = 0
        self.m: list[torch.Tensor] | None = None
        self.v: torch.Tensor | None = None

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        sq = torch.stack(torch._foreach_norm(grads)).square()
        self.count += 1
        self.v = sq if self.count == 1 else self.v.mul_(self.b2).add_(sq, alpha=1 - self.b2)
        terms = torch._foreach_div(grads, (self.v.sqrt() + self.eps).tolist())
        if self.wd:
            torch._foreach_add_(terms, self.params, alpha=self.wd)
        if self.count == 1:
            self.m = terms
        else:
            torch._foreach_mul_(self.m, self.b1)
            torch._foreach_add_(self.m, terms)
        torch._foreach_add_(self.params, self.m, alpha=-self.lr)


def torch_ctc(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Batch mean of the per-utterance CTC sums (no padding anywhere)."""
    B, T, _ = logits.shape
    log_probs = nnf.log_softmax(logits, dim=-1).transpose(0, 1)  # [T, B, V+1]
    return (
        nnf.ctc_loss(
            log_probs,
            labels,
            torch.full((B,), T, dtype=torch.long),
            torch.full((B,), labels.shape[1], dtype=torch.long),
            blank=0,
            reduction="sum",
        )
        / B
    )


def make_torch_step(
    net: TorchJasper, opt: TorchNovoGrad, x: np.ndarray, y: np.ndarray, threads: int
):
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    net.train()

    def run(steps: int) -> None:
        torch.set_num_threads(threads)
        for _ in range(steps):
            opt.zero_grad()
            loss = torch_ctc(net(xt), yt)
            loss.backward()
            opt.step()

    return run


# ----------------------------------------------------------------------------- JAX step


def jax_loss(model: Jasper, params, batch_stats, x, y, key):
    (logits, paddings), new = model.apply(
        {"params": params, "batch_stats": batch_stats},
        x,
        train=True,
        rngs={"dropout": key},
        mutable=["batch_stats"],
    )
    per_utt = optax.ctc_loss(logits, paddings, y, jnp.zeros(y.shape, jnp.float32), blank_id=0)
    return jnp.mean(per_utt), new["batch_stats"]


def make_jax_step(model: Jasper, tx: optax.GradientTransformation):
    @jax.jit
    def step(params, batch_stats, opt_state, x, y, key, i):
        (loss, batch_stats), grads = jax.value_and_grad(
            lambda p: jax_loss(model, p, batch_stats, x, y, jax.random.fold_in(key, i)),
            has_aux=True,
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    return step


def jax_runner(model: Jasper, variables: Any, x: np.ndarray, y: np.ndarray):
    """(compile seconds, run(steps)) for the jitted train step of `model`."""
    tx = novograd(LR, b1=B1, b2=B2, weight_decay=WEIGHT_DECAY)
    state = [variables["params"], variables["batch_stats"], tx.init(variables["params"])]
    xj, yj, key = jnp.asarray(x), jnp.asarray(y), jax.random.key(1)
    start = time.perf_counter()
    step = make_jax_step(model, tx).lower(*state, xj, yj, key, 0).compile()
    compile_s = time.perf_counter() - start
    counter = [0]

    def run(steps: int) -> None:
        for _ in range(steps):
            *new, _loss = step(*state, xj, yj, key, counter[0])
            state[:] = new
            counter[0] += 1
        jax.block_until_ready(state)

    return compile_s, run


# ----------------------------------------------------------------------------- checks


def check_numerics(variables: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """JAX vs torch with the same weights: eval logits, train loss and gradients (no dropout),
    and 3 NovoGrad updates of the same gradients."""
    out: dict[str, float] = {}
    model = protocol_model(dropout=0.0, epilogue_dropout=0.0, conv_impl="xla")
    net = TorchJasper(model, FEATURES)
    load_jax_variables(net, variables)
    net.eval()
    logits_j, _ = model.apply(variables, jnp.asarray(x), train=False)
    with torch.no_grad():
        logits_t = net(torch.from_numpy(x)).numpy()
    out["eval_logits_max_abs_diff"] = float(np.abs(np.asarray(logits_j) - logits_t).max())
    out["eval_logits_max_abs"] = float(np.abs(logits_t).max())

    (loss_j, _), grads_j = jax.value_and_grad(
        lambda p: jax_loss(model, p, variables["batch_stats"], x, y, jax.random.key(0)),
        has_aux=True,
    )(variables["params"])
    net.train()
    loss_t = torch_ctc(net(torch.from_numpy(x)), torch.from_numpy(y.astype(np.int64)))
    loss_t.backward()
    grads_t = torch_grads_as_jax_tree(net)
    out["train_loss_jax"], out["train_loss_torch"] = float(loss_j), loss_t.item()
    diffs = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), grads_j, grads_t)
    rel = jax.tree.map(
        lambda a, b: float(np.abs(np.asarray(a) - b).max() / np.abs(b).max()), grads_j, grads_t
    )
    out["grad_max_abs_diff"] = max(jax.tree.leaves(diffs))
    out["grad_max_rel_diff"] = max(jax.tree.leaves(rel))

    # Optimizers: 3 updates with the same (JAX) gradients, from the same weights.
    tx = novograd(LR, b1=B1, b2=B2, weight_decay=WEIGHT_DECAY)
    params, opt_state = variables["params"], tx.init(variables["params"])
    load_jax_variables(net, variables)
    names = list(net.layers)
    torch_params = [p for n in names for p in net.layers[n].parameters()]
    opt = TorchNovoGrad(torch_params, LR, B1, B2, EPS, WEIGHT_DECAY)
    for scale in (1.0, 0.5, 2.0):
        g = jax.tree.map(lambda a, s=scale: a * s, grads_j)
        updates, opt_state = tx.update(g, opt_state, params)
        params = optax.apply_updates(params, updates)
        set_torch_grads(net, g)
        opt.step()
    check = TorchJasper(model, FEATURES)
    load_jax_variables(check, {"params": params, "batch_stats": variables["batch_stats"]})
    out["novograd_3_updates_max_abs_diff"] = max(
        float((a - b).abs().max().detach())
        for a, b in zip(check.parameters(), net.parameters(), strict=True)
    )
    return out


# ----------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--steps", type=int, default=10, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="steps of each before timing")
    parser.add_argument("--impls", nargs="+", default=["matmul", "xla"], help="JAX conv_impl rows")
    parser.add_argument(
        "--torch-threads",
        type=int,
        nargs="+",
        default=sorted({os.cpu_count() or 1, 1}, reverse=True),
        help="one torch row per intra-op thread count (default: all cores, and 1)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the medians here")
    return parser.parse_args()


def print_setup(model: Jasper, n_params: int) -> None:
    print(
        f"jax {jax.__version__} devices {jax.devices()}, torch {torch.__version__} "
        f"num_threads {torch.get_num_threads()}, os.cpu_count() {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"Jasper {model.blocks}x{model.repeats} (protocol.yaml), {n_params:,} parameters in "
        f"both; T = {FRAMES} frames x {FEATURES} features, labels of {LABEL_LEN}; NovoGrad in both"
    )


def print_numerics(numerics: dict[str, float]) -> None:
    print(
        "numerics (float32, same weights, batch 4): eval logits max |jax - torch| "
        f"{numerics['eval_logits_max_abs_diff']:.1e} (max |logit| "
        f"{numerics['eval_logits_max_abs']:.1f}); train loss {numerics['train_loss_jax']:.4f} "
        f"vs {numerics['train_loss_torch']:.4f}; gradients max abs diff "
        f"{numerics['grad_max_abs_diff']:.1e}, max rel {numerics['grad_max_rel_diff']:.1e}; "
        f"3 NovoGrad updates: params max abs diff {numerics['novograd_3_updates_max_abs_diff']:.1e}"
    )


def build_runners(
    args: argparse.Namespace, model: Jasper, variables: Any, x: np.ndarray, y: np.ndarray
) -> tuple[dict[str, Callable[[int], None]], dict[str, float], list[str]]:
    """(runners by row name, JAX compile seconds, the torch row names)."""
    runners: dict[str, Callable[[int], None]] = {}
    compile_s: dict[str, float] = {}
    for impl in args.impls:
        compile_s[f"jax {impl}"], runners[f"jax {impl}"] = jax_runner(
            protocol_model(conv_impl=impl), variables, x, y
        )
    torch_rows = []
    for threads in args.torch_threads:
        net = TorchJasper(model, FEATURES)
        load_jax_variables(net, variables)
        opt = TorchNovoGrad(net.parameters(), LR, B1, B2, EPS, WEIGHT_DECAY)
        name = f"torch eager {threads} thr"
        runners[name] = make_torch_step(net, opt, x, y, threads)
        torch_rows.append(name)
    return runners, compile_s, torch_rows


def ms_per_step(run: Callable[[int], None], steps: int) -> float:
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) * 1e3 / max(steps, 1)


def torch_over_jax(
    times: dict[str, list[float]], torch_rows: list[str]
) -> tuple[dict[str, list[float]], dict[str, dict[str, float]]]:
    """Within-round ratios torch / jax, per torch row and against the faster torch row:
    (the torch columns, ratios[jax row][column])."""
    best_torch = [min(row) for row in zip(*(times[t] for t in torch_rows), strict=True)]
    columns = {**{t: times[t] for t in torch_rows}, "best torch": best_torch}
    jax_rows = [name for name in times if name not in torch_rows]
    ratios = {
        j: {
            c: statistics.median(t / jt for t, jt in zip(tt, times[j], strict=True))
            for c, tt in columns.items()
        }
        for j in jax_rows
    }
    return columns, ratios


def benchmark_batch(
    args: argparse.Namespace, model: Jasper, variables: Any, batch: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Warm-up, then interleaved rounds of every row at one batch size; prints the table."""
    x = rng.standard_normal((batch, FRAMES, FEATURES), dtype=np.float32)
    y = rng.integers(1, OUTPUTS, (batch, LABEL_LEN)).astype(np.int32)
    runners, compile_s, torch_rows = build_runners(args, model, variables, x, y)
    warm_ms = {name: ms_per_step(run, args.warmup) for name, run in runners.items()}
    print(
        f"\nbatch {batch}: compile s: "
        + ", ".join(f"{k} {v:.1f}" for k, v in compile_s.items())
        + "; warm-up ms/step: "
        + ", ".join(f"{k} {v:.0f}" for k, v in warm_ms.items())
    )
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            times[name].append(ms_per_step(run, args.steps))
    medians = {name: statistics.median(v) for name, v in times.items()}
    columns, ratios = torch_over_jax(times, torch_rows)
    heads = "".join(f"{c.replace('torch eager ', 'torch '):>13}" for c in columns)
    print(
        f"  {args.rounds} rounds x {args.steps} steps  ms/step  examples/s"
        f"   torch / jax (median of rounds):{heads}"
    )
    for name, ms in medians.items():
        cells = "".join(f"{ratios[name][c]:13.2f}" for c in columns) if name in ratios else ""
        print(f"  {name:<22}{ms:9.1f}{batch / (ms / 1e3):12.1f}{'':33}{cells}")
    return {
        "ms_per_step": medians,
        "torch_over_jax": ratios,
        "warmup_ms": warm_ms,
        "compile_s": compile_s,
        "rounds_ms": times,
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.torch_threads[0])
    torch.manual_seed(args.seed)
    model = protocol_model()
    key = jax.random.key(args.seed)
    variables = model.init(key, jnp.zeros((1, FRAMES, FEATURES)), train=False)
    n_jax = sum(p.size for p in jax.tree.leaves(variables["params"]))
    n_torch = sum(p.numel() for p in TorchJasper(model, FEATURES).parameters())
    assert n_jax == n_torch, (n_jax, n_torch)
    print_setup(model, n_jax)

    rng = np.random.default_rng(args.seed)
    x0 = rng.standard_normal((4, FRAMES, FEATURES), dtype=np.float32)
    y0 = rng.integers(1, OUTPUTS, (4, LABEL_LEN)).astype(np.int32)
    numerics = check_numerics(variables, x0, y0)
    print_numerics(numerics)

    record: dict[str, Any] = {"numerics": numerics, "parameters": n_jax, "batches": {}}
    for batch in args.batch:
        record["batches"][batch] = benchmark_batch(args, model, variables, batch, rng)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
