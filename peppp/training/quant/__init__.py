"""Quantize float32 tensors to simulated low-precision formats (float eXmY, fixed point, block float,
the hardware floats fp8/bf16/fp16 and the OCP MX block-scaled formats).

Backends: `fast` (default) runs the C++ float kernels (AVX-512, AVX2 or scalar, JIT-built once) on
CPU tensors, Triton kernels (one launch per tensor, `triton_kernels`) on CUDA tensors where Triton is
installed, and the pure-torch kernels elsewhere; `torch` always uses the pure-torch kernels;
`qtorch` calls qtorch 0.3.0, the reference. Nearest rounding is bit-identical across all three,
qtorch's quirks included (see float_kernel.cpp), except eXm23 and block wl=23 where qtorch shifts
by -1 (undefined behaviour) and flips signs;
stochastic rounding of `fast` and `torch` draws from torch's generator, so `torch.manual_seed`
reproduces it, while qtorch's float and block stochastic rounding cannot be seeded.

The hardware and MX formats are not qtorch's: their nearest rounding is IEEE half-to-even, saturating
(NaN stays NaN), checked bit for bit against ml_dtypes (and torchao's MX reference); `fast` runs the
pure-torch kernels on the CPU (exact in float32) and Triton kernels on CUDA tensors, and `qtorch` has
none (it is refused).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch

from peppp.errors import PepppError
from peppp.formats import (
    BLOCK_DIMS,
    BLOCK_WL_RANGE,
    FIXED_WL_RANGE,
    FLOAT_EXP_RANGE,
    FLOAT_MAN_RANGE,
    BlockFormat,
    FixedFormat,
    FloatFormat,
    FP32Format,
    HardwareFloatFormat,
    MXFormat,
    NumberFormat,
    parse_format,
)
from peppp.training.quant import torch_kernels, triton_kernels
from peppp.training.quant._extension import (
    default_extensions_dir,
    extension_available,
    load_extension,
)

ROUNDINGS = ("stochastic", "nearest")
BACKENDS = ("fast", "torch", "qtorch")

QuantizeFn = Callable[[torch.Tensor], torch.Tensor]

__all__ = [
    "BACKENDS",
    "ROUNDINGS",
    "block_quantize",
    "default_extensions_dir",
    "extension_available",
    "fixed_point_quantize",
    "float_quantize",
    "quantize",
    "quantize_function",
]


def _check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise PepppError(f"{what} {value!r} is not one of {', '.join(allowed)}")


def _check_int(what: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise PepppError(f"{what} {value!r} is outside {low}..{high}")


def _check_tensor(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise PepppError(f"can only quantize float32 tensors, got {got}")


def _qtorch_quant():
    from peppp.training.quant._extension import _prepare_environment, build_guard

    _prepare_environment()  # qtorch JIT-builds too and needs ninja on PATH
    if "qtorch.quant" not in sys.modules:
        with build_guard("quant_cpu"):  # qtorch builds (or loads) its CPU kernels on first import
            import qtorch.quant  # noqa: F401
    return sys.modules["qtorch.quant"]


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)


def _no_seed_for_qtorch(seed: int | None) -> None:
    if seed is not None:
        raise PepppError(f"seed {seed!r} cannot be used with backend 'qtorch' (its random numbers are not seedable); use backend 'fast'")


def _gpu_call(backend: str, spec, stochastic: bool, seed: int | None, **kwargs) -> _TritonCall | None:
    """The Triton kernel of a format for CUDA tensors under backend `fast`; None for the other backends
    or where Triton is missing (the torch kernels run then)."""
    if backend != "fast" or not triton_kernels.AVAILABLE:
        return None
    return _TritonCall(spec, stochastic, seed, **kwargs)


class _TritonCall:
    """One format's Triton kernel for CUDA tensors (made by `_gpu_call`).

    Stochastic seeds: `seed` for every call where given (tests); else a base seed drawn from torch's
    generator on the first call and a call counter, so `torch.manual_seed` reproduces a run without a
    draw (or a host synchronisation) per call.
    """

    def __init__(self, spec, stochastic: bool, seed: int | None, block: tuple[int, int] | None = None,
                 mx_emax: int | None = None):
        self.spec, self.stochastic, self.seed, self.block = spec, stochastic, seed, block
        self.mx_emax = mx_emax
        self.base: int | None = None
        self.calls = 0

    def _next_seed(self) -> int:
        if not self.stochastic:
            return 0
        if self.seed is not None:
            return self.seed
        if self.base is None:
            self.base = triton_kernels.draw_base_seed()
        self.calls += 1
        return triton_kernels.next_seed(self.base, self.calls)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mx_emax is not None:
            return triton_kernels.mx_quantize(x, self.spec, self.mx_emax, stochastic=self.stochastic, seed=self._next_seed())
        if self.block is None:
            return triton_kernels.elementwise_quantize(x, self.spec, stochastic=self.stochastic, seed=self._next_seed())
        wl, dim = self.block
        rows = x.shape[0] if dim == 0 and x.dim() > 0 else 1
        return triton_kernels.block_quantize(x, wl, stochastic=self.stochastic, seed=self._next_seed(), rows=rows)


def _float_fn(exp: int, man: int, rounding: str, backend: str, seed: int | None) -> QuantizeFn:
    _check_int("exponent bits", exp, *FLOAT_EXP_RANGE)
    _check_int("mantissa bits", man, *FLOAT_MAN_RANGE)
    if backend == "qtorch":
        _no_seed_for_qtorch(seed)
        qq = _qtorch_quant()
        return lambda x: qq.float_quantize(x, exp, man, rounding=rounding)
    stochastic = rounding == "stochastic"
    gpu = _gpu_call(backend, triton_kernels.ElementwiseSpec.float_(exp, man), stochastic, seed)
    cpu: list = []  # the C++ kernels, loaded (built once) on the first CPU tensor: a GPU run never needs them

    def fn(x: torch.Tensor) -> torch.Tensor:
        if gpu is not None and x.is_cuda:
            return gpu(x)
        if backend == "fast" and x.device.type == "cpu" and not cpu:
            cpu.append(load_extension())
        ext = cpu[0] if cpu else None
        if ext is not None and x.device.type == "cpu":
            if stochastic:
                return ext.float_quantize_stochastic(x, exp, man, seed)
            return ext.float_quantize_nearest(x, exp, man)
        if stochastic:
            return torch_kernels.float_quantize_stochastic(x, exp, man, generator=_generator(seed, x.device))
        return torch_kernels.float_quantize_nearest(x, exp, man)

    return fn


def _fixed_fn(wl: int, fl: int, rounding: str, backend: str, seed: int | None) -> QuantizeFn:
    _check_int("fixed-point word length", wl, *FIXED_WL_RANGE)
    _check_int("fixed-point fractional bits", fl, 1, wl - 1)
    if backend == "qtorch":
        _no_seed_for_qtorch(seed)
        qq = _qtorch_quant()
        return lambda x: qq.fixed_point_quantize(x, wl, fl, rounding=rounding)
    gpu = _gpu_call(backend, triton_kernels.ElementwiseSpec.fixed(wl, fl), rounding == "stochastic", seed)

    def fn(x: torch.Tensor) -> torch.Tensor:
        if gpu is not None and x.is_cuda:
            return gpu(x)
        return torch_kernels.fixed_point_quantize(x, wl, fl, rounding=rounding, generator=_generator(seed, x.device))

    return fn


def _block_fn(wl: int, dim: int, rounding: str, backend: str, seed: int | None) -> QuantizeFn:
    _check_int("block word length", wl, *BLOCK_WL_RANGE)
    if dim not in BLOCK_DIMS:
        raise PepppError(f"block dimension {dim!r} is not one of {', '.join(map(str, BLOCK_DIMS))}")
    if backend == "qtorch":
        _no_seed_for_qtorch(seed)
        qq = _qtorch_quant()
        return lambda x: qq.block_quantize(x, wl, dim, rounding=rounding)
    gpu = _gpu_call(backend, None, rounding == "stochastic", seed, block=(wl, dim))

    def fn(x: torch.Tensor) -> torch.Tensor:
        if gpu is not None and x.is_cuda:
            return gpu(x)
        return torch_kernels.block_quantize(x, wl, dim, rounding=rounding, generator=_generator(seed, x.device))

    return fn


def _element_fn(fmt: HardwareFloatFormat | MXFormat, rounding: str, backend: str, seed: int | None) -> QuantizeFn:
    if backend == "qtorch":
        raise PepppError(f"qtorch has no {fmt} (its formats are eXmY, fixed and block point); use backend 'fast' or 'torch'")
    el = fmt.element
    mx = isinstance(fmt, MXFormat)
    stochastic = rounding == "stochastic"
    spec = triton_kernels.ElementwiseSpec.element(el.man, el.emin, el.max_value, el.min_value)
    gpu = _gpu_call(backend, spec, stochastic, seed, mx_emax=el.emax if mx else None)
    numbers = {"man": el.man, "emin": el.emin, "max_value": el.max_value, "min_value": el.min_value}

    def fn(x: torch.Tensor) -> torch.Tensor:
        if gpu is not None and x.is_cuda:
            return gpu(x)
        generator = _generator(seed, x.device)
        if mx:
            return torch_kernels.mx_quantize(x, emax=el.emax, rounding=rounding, generator=generator, **numbers)
        return torch_kernels.hardware_float_quantize(x, rounding=rounding, generator=generator, **numbers)

    return fn


def quantize_function(
    fmt: NumberFormat | str, *, rounding: str = "stochastic", backend: str = "fast", seed: int | None = None
) -> QuantizeFn:
    """A tensor -> tensor function quantizing to `fmt`, with format and backend resolved once.

    `fmt` is a format or its written form (`e5m2`, `fixed8.6`, `block8@0`, `fp8.e4m3`, `mxfp4.e2m1`,
    `fp32`); MX blocks run along the tensor's last dimension; `FP32` gives the
    identity. `seed` fixes the stochastic draws of every call to the same seed (for
    tests); None draws a fresh seed from torch's default generator on each call.
    """
    _check_choice("rounding", rounding, ROUNDINGS)
    _check_choice("backend", backend, BACKENDS)
    if isinstance(fmt, str):
        fmt = parse_format(fmt)
    if isinstance(fmt, FP32Format):
        return lambda x: x
    if isinstance(fmt, FloatFormat):
        inner = _float_fn(fmt.exp, fmt.man, rounding, backend, seed)
    elif isinstance(fmt, FixedFormat):
        inner = _fixed_fn(fmt.wl, fmt.fl, rounding, backend, seed)
    elif isinstance(fmt, BlockFormat):
        inner = _block_fn(fmt.wl, fmt.dim, rounding, backend, seed)
    elif isinstance(fmt, (HardwareFloatFormat, MXFormat)):
        inner = _element_fn(fmt, rounding, backend, seed)
    else:
        raise PepppError(
            f"cannot quantize to {fmt!r}; expected a FloatFormat, FixedFormat, BlockFormat, HardwareFloatFormat, MXFormat or FP32"
        )

    def fn(x: torch.Tensor) -> torch.Tensor:
        _check_tensor(x)
        return inner(x)

    return fn


def quantize(
    x: torch.Tensor, fmt: NumberFormat | str, *, rounding: str = "stochastic", backend: str = "fast", seed: int | None = None
) -> torch.Tensor:
    """`x` (float32) rounded to `fmt`, as a new tensor (`x` itself for FP32)."""
    return quantize_function(fmt, rounding=rounding, backend=backend, seed=seed)(x)


def float_quantize(
    x: torch.Tensor, exp: int, man: int, rounding: str = "stochastic", *, backend: str = "fast", seed: int | None = None
) -> torch.Tensor:
    """`x` rounded to eXmY (1 sign, `exp` exponent, `man` mantissa bits), qtorch's semantics."""
    _check_choice("rounding", rounding, ROUNDINGS)
    _check_choice("backend", backend, BACKENDS)
    _check_tensor(x)
    return _float_fn(exp, man, rounding, backend, seed)(x)


def fixed_point_quantize(
    x: torch.Tensor, wl: int, fl: int, rounding: str = "stochastic", *, backend: str = "fast", seed: int | None = None
) -> torch.Tensor:
    """`x` rounded to fixed point with `wl` bits, `fl` of them fractional, clamped to its range."""
    _check_choice("rounding", rounding, ROUNDINGS)
    _check_choice("backend", backend, BACKENDS)
    _check_tensor(x)
    return _fixed_fn(wl, fl, rounding, backend, seed)(x)


def block_quantize(
    x: torch.Tensor, wl: int, dim: int = -1, rounding: str = "stochastic", *, backend: str = "fast", seed: int | None = None
) -> torch.Tensor:
    """`x` rounded to `wl`-bit block floating point; one shared exponent for the whole tensor (dim=-1)
    or one per index along dim 0."""
    _check_choice("rounding", rounding, ROUNDINGS)
    _check_choice("backend", backend, BACKENDS)
    _check_tensor(x)
    return _block_fn(wl, dim, rounding, backend, seed)(x)
