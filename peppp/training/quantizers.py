"""Quantizer modules (values forward, gradients backward) and the low-precision SGD of a configuration.

The paper's placement: the network's quantizers come from `make_quantizer_factory` (one module per
place); `make_optimizer` quantizes weights and weight gradients to the low format and the momentum and
the master weights (qtorch's accumulator) to the high format.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import torch
from torch import nn

from peppp.errors import PepppError
from peppp.formats import FP32, NumberFormat, PrecisionConfig, parse_config, parse_format
from peppp.training.quant import BACKENDS, ROUNDINGS, QuantizeFn, quantize_function


class _Quantize(torch.autograd.Function):
    """Forward: forward_fn(x); backward: backward_fn(grad)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, forward_fn: QuantizeFn, backward_fn: QuantizeFn) -> torch.Tensor:
        ctx.backward_fn = backward_fn
        return forward_fn(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return ctx.backward_fn(grad.contiguous()), None, None


def _as_format(fmt: NumberFormat | str) -> NumberFormat:
    if isinstance(fmt, NumberFormat):
        return fmt
    if isinstance(fmt, str):
        return parse_format(fmt)
    raise PepppError(f"expected a number format or its name (e.g. e5m2), got {fmt!r}")


class Quantizer(nn.Module):
    """Rounds values to `forward_fmt` on the way forward and their gradients to `backward_fmt` on the
    way back (the same as qtorch.quant.Quantizer). FP32 on a side leaves that side untouched."""

    def __init__(
        self,
        forward_fmt: NumberFormat | str,
        backward_fmt: NumberFormat | str | None = None,
        *,
        rounding: str = "stochastic",
        backend: str = "fast",
    ):
        super().__init__()
        self.forward_fmt = _as_format(forward_fmt)
        self.backward_fmt = self.forward_fmt if backward_fmt is None else _as_format(backward_fmt)
        self.rounding = rounding
        self.backend = backend
        self._resolve()

    def _resolve(self) -> None:
        self._forward_fn = quantize_function(self.forward_fmt, rounding=self.rounding, backend=self.backend)
        self._backward_fn = quantize_function(self.backward_fmt, rounding=self.rounding, backend=self.backend)
        self._identity = self.forward_fmt == FP32 and self.backward_fmt == FP32

    def __getstate__(self) -> dict:
        # the resolved kernels are closures; pickle the formats and resolve them again on load
        state = self.__dict__.copy()
        del state["_forward_fn"], state["_backward_fn"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._resolve()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._identity:
            return x
        return _Quantize.apply(x, self._forward_fn, self._backward_fn)

    def extra_repr(self) -> str:
        return f"forward={self.forward_fmt}, backward={self.backward_fmt}, rounding={self.rounding}, backend={self.backend}"


def make_quantizer_factory(
    fmt: NumberFormat | str, *, rounding: str = "stochastic", backend: str = "fast"
) -> Callable[[], Quantizer]:
    """A zero-argument callable making a fresh `Quantizer(fmt, fmt)` each call (what networks take)."""
    fmt = _as_format(fmt)
    _check_choices(rounding, backend)
    # build one now so that a bad format or backend fails here, not inside the network's constructor
    Quantizer(fmt, fmt, rounding=rounding, backend=backend)
    return functools.partial(Quantizer, fmt, fmt, rounding=rounding, backend=backend)


def _check_choices(rounding: str, backend: str) -> None:
    if rounding not in ROUNDINGS:
        raise PepppError(f"rounding {rounding!r} is not one of {', '.join(ROUNDINGS)}")
    if backend not in BACKENDS:
        raise PepppError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")


def make_optimizer(
    params: Iterable[torch.Tensor] | Iterable[dict],
    *,
    config: PrecisionConfig | str,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    rounding: str = "stochastic",
    backend: str = "fast",
    loss_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """SGD for `config`: weights and weight gradients in the low format, momentum and master weights
    (accumulator) in the high format, as qtorch's OptimLP; plain SGD for the fp32 config.

    Backend `qtorch` uses OptimLP itself (one quantizer call per parameter and buffer); the others use
    `LowPrecisionSGD`, the same step over flat buffers in a few launches (one fused kernel on CUDA).

    Gradients arrive multiplied by `loss_scale` (the loss was scaled before backward) and are divided
    by it before they are quantized. The fp32 configuration is the unscaled baseline: plain SGD, and
    `loss_scale` is not applied, so its caller must not scale the loss.
    """
    cfg = parse_config(config)
    _check_choices(rounding, backend)
    if not loss_scale > 0:
        raise PepppError(f"loss_scale must be > 0, got {loss_scale!r}")
    params = list(params)
    if cfg.is_fp32:
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if backend != "qtorch":
        from peppp.training.lp_sgd import LowPrecisionSGD

        if params and isinstance(params[0], dict):
            raise PepppError("make_optimizer takes parameter tensors, not parameter groups")
        return LowPrecisionSGD(
            params,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            low=cfg.low,
            high=cfg.high,
            rounding=rounding,
            backend=backend,
            grad_scale=1.0 / loss_scale,
        )
    from qtorch.optim import OptimLP  # pure Python; needs no compiled extension

    sgd = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    low = quantize_function(cfg.low, rounding=rounding, backend=backend)
    high = quantize_function(cfg.high, rounding=rounding, backend=backend)
    return OptimLP(
        sgd,
        weight_quant=low,
        grad_quant=low,
        momentum_quant=high,
        acc_quant=high,
        grad_scaling=1.0 / loss_scale,
    )
