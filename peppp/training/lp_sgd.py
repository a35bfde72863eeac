"""Low-precision SGD over flat buffers: qtorch's OptimLP semantics in a few launches per step.

qtorch's OptimLP quantizes every parameter's gradient, master weight (accumulator), weight and
momentum one tensor at a time: four quantizer calls per parameter plus torch's SGD, about 250 kernel
launches per step for ResNet-18 on a GPU. Here all parameters live in one flat float32 buffer each
(weights, master weights, gradients, momenta; the model's parameters and their `.grad` are views into
them), and a step is one fused Triton kernel on CUDA (float, fixed and hardware float formats) or a handful
of whole-buffer operations elsewhere (block and MX formats, quantized per parameter; CPU tensors).

The step, as OptimLP over torch.optim.SGD (dampening 0, no Nesterov):

    g = low(grad * grad_scale); d = g + weight_decay * acc
    buf = d (first step) or momentum * buf + d;  acc = acc - lr * buf
    acc = high(acc); weight = low(acc); buf = high(buf)

Differences from OptimLP: a parameter that got no gradient is stepped with a zero gradient (weight
decay still applies) instead of being skipped; `zero_grad` zeroes the gradient buffer in place (the
gradients are views into it and are never set to None).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from peppp.errors import PepppError
from peppp.formats import BlockFormat, FixedFormat, FloatFormat, FP32Format, HardwareFloatFormat, MXFormat, NumberFormat
from peppp.training.quant import quantize_function, triton_kernels


def _elementwise_spec(fmt: NumberFormat) -> triton_kernels.ElementwiseSpec | None:
    if isinstance(fmt, FloatFormat):
        return triton_kernels.ElementwiseSpec.float_(fmt.exp, fmt.man)
    if isinstance(fmt, FixedFormat):
        return triton_kernels.ElementwiseSpec.fixed(fmt.wl, fmt.fl)
    if isinstance(fmt, HardwareFloatFormat):
        el = fmt.element
        return triton_kernels.ElementwiseSpec.element(el.man, el.emin, el.max_value, el.min_value)
    if isinstance(fmt, FP32Format):
        return triton_kernels.ElementwiseSpec.identity()
    return None  # block formats need a per-parameter maximum first


class LowPrecisionSGD(torch.optim.Optimizer):
    """SGD with weights and gradients in `low`, momentum and master weights in `high` (see module doc).

    Parameters
    ----------
    params : the model's parameters (one group; all float32 on one device). They become views into
        the optimizer's flat weight buffer, and their `.grad` views into its gradient buffer.
    low, high : number formats.
    rounding : "stochastic" or "nearest"; backend: "fast" (fused kernels) or "torch" (pure torch).
    grad_scale : gradients are multiplied by it before they are quantized (1 / loss scale).
    fused : run the one-kernel Triton step; None (default) where the parameters are CUDA tensors,
        Triton is installed and neither format is block floating point.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        *,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        low: NumberFormat,
        high: NumberFormat,
        rounding: str = "stochastic",
        backend: str = "fast",
        grad_scale: float = 1.0,
        fused: bool | None = None,
    ):
        params = list(params)
        if not params or not all(isinstance(p, torch.Tensor) for p in params):
            raise PepppError("LowPrecisionSGD takes a non-empty list of parameter tensors (one group)")
        if any(p.dtype != torch.float32 for p in params) or len({p.device for p in params}) != 1:
            raise PepppError("LowPrecisionSGD needs float32 parameters on one device")
        if not lr > 0 or momentum < 0 or weight_decay < 0 or not grad_scale > 0:
            raise PepppError(f"bad SGD settings: lr={lr}, momentum={momentum}, weight_decay={weight_decay}, grad_scale={grad_scale}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self.low, self.high = low, high
        self.rounding, self.backend, self.grad_scale = rounding, backend, grad_scale
        device = params[0].device
        total = sum(p.numel() for p in params)
        self.weights = torch.empty(total, dtype=torch.float32, device=device)
        self.grads = torch.zeros(total, dtype=torch.float32, device=device)
        self.momentum_buffer = torch.zeros(total, dtype=torch.float32, device=device)
        self.weight_acc: dict[torch.Tensor, torch.Tensor] = {}
        self._slices: list[tuple[int, int]] = []
        self._grad_views: list[torch.Tensor] = []
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                self.weights[offset : offset + n].copy_(p.detach().reshape(-1))
                p.data = self.weights[offset : offset + n].view_as(p)
                p.grad = self.grads[offset : offset + n].view_as(p)
                self._grad_views.append(p.grad)
                self._slices.append((offset, n))
                offset += n
        self.acc = self.weights.clone()  # master weights start unquantized, as OptimLP's
        for p, (o, n) in zip(params, self._slices):
            self.weight_acc[p] = self.acc[o : o + n].view_as(p)
        self._params = params
        self.lr_tensor: torch.Tensor | None = None  # set by use_lr_tensor (CUDA graphs)
        self._steps = 0
        self._seed_base: int | None = None
        low_spec, high_spec = _elementwise_spec(low), _elementwise_spec(high)
        can_fuse = triton_kernels.AVAILABLE and backend == "fast" and low_spec is not None and high_spec is not None
        if fused is None:
            fused = can_fuse and device.type == "cuda"
        elif fused and not can_fuse:
            raise PepppError("the fused step needs Triton, backend 'fast' and float, fixed or hardware float (fp8, bf16, fp16) formats")
        self.fused = fused
        self._specs = (low_spec, high_spec)
        if not fused:
            self._low_fn = quantize_function(low, rounding=rounding, backend=backend)
            self._high_fn = quantize_function(high, rounding=rounding, backend=backend)

    # torch's SGD keeps the momentum in state[p]["momentum_buffer"]; here they are views of one buffer
    def _expose_state(self) -> None:
        for p, (o, n) in zip(self._params, self._slices):
            self.state[p]["momentum_buffer"] = self.momentum_buffer[o : o + n].view_as(p)

    def use_lr_tensor(self) -> None:
        """Read the learning rate from a device scalar (kept by `sync_lr`), not a launch argument: a
        step captured in a CUDA graph then follows the schedule. Only the fused step supports it."""
        if not self.fused:
            raise PepppError("only the fused step reads its learning rate from the device")
        self.lr_tensor = torch.full((), float(self.param_groups[0]["lr"]), dtype=torch.float32, device=self.weights.device)

    def sync_lr(self) -> None:
        """Copy the group's learning rate (a scheduler may have changed it) into `lr_tensor`."""
        if self.lr_tensor is not None:
            self.lr_tensor.fill_(float(self.param_groups[0]["lr"]))

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: ARG002 - the views must stay
        """Zero the gradient buffer in place (one launch)."""
        self.grads.zero_()

    def _gather_replaced_grads(self) -> None:
        """A `.grad` that was assigned (or set to None) since the last step goes back into the buffer."""
        for i, p in enumerate(self._params):
            grad, view = p.grad, self._grad_views[i]
            if grad is view:
                continue
            if grad is None:
                view.zero_()
            else:
                view.copy_(grad)
            p.grad = view

    def _quantize_flat(self, fn, fmt: NumberFormat, flat: torch.Tensor) -> None:
        # a shared exponent per parameter, as OptimLP's per-tensor calls; MX blocks along each one's last dimension
        if isinstance(fmt, (BlockFormat, MXFormat)):
            for p, (o, n) in zip(self._params, self._slices):
                flat[o : o + n].copy_(fn(flat[o : o + n].view_as(p)).reshape(-1))
        else:
            flat.copy_(fn(flat))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D401 - torch's signature
        """One step for every parameter (see the module doc)."""
        if closure is not None:
            raise PepppError("LowPrecisionSGD.step takes no closure")
        group = self.param_groups[0]
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        first = self._steps == 0
        self._gather_replaced_grads()
        if self.fused:
            capturing = self.weights.is_cuda and torch.cuda.is_current_stream_capturing()
            if self.lr_tensor is not None and not capturing:
                self.sync_lr()  # an eager step between replays (a last, smaller batch) reads the scheduled lr too
            if self._seed_base is None:
                self._seed_base = triton_kernels.draw_base_seed()
            triton_kernels.sgd_lp_step(
                weights=self.weights, acc=self.acc, grads=self.grads, momentum_buffer=self.momentum_buffer,
                low=self._specs[0], high=self._specs[1], lr=lr, weight_decay=wd, momentum=momentum,
                grad_scale=self.grad_scale, first=first, stochastic=self.rounding == "stochastic",
                seed=triton_kernels.next_seed(self._seed_base, self._steps), lr_tensor=self.lr_tensor,
            )
        else:
            g = self.grads
            g.mul_(self.grad_scale)
            self._quantize_flat(self._low_fn, self.low, g)
            d = g.add(self.acc, alpha=wd)
            if momentum != 0:
                if first:
                    self.momentum_buffer.copy_(d)
                else:
                    self.momentum_buffer.mul_(momentum).add_(d)
                self.acc.add_(self.momentum_buffer, alpha=-lr)
            else:
                self.acc.add_(d, alpha=-lr)
            self._quantize_flat(self._high_fn, self.high, self.acc)
            self.weights.copy_(self.acc)
            self._quantize_flat(self._low_fn, self.low, self.weights)
            if momentum != 0:
                self._quantize_flat(self._high_fn, self.high, self.momentum_buffer)
        self._steps += 1
        if momentum != 0 and first:
            self._expose_state()
        return None
