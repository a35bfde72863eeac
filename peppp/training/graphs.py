"""A training step captured once as a CUDA graph and replayed: one launch per step instead of hundreds.

On a GPU a quantized step of a small network is bound by kernel launches (about 100 quantizer
launches plus the network's own per step), not by arithmetic. `CapturedStep` records zero_grad,
forward, loss, scaled backward, the fused optimizer step and the step counter of the random seeds
(`triton_kernels.device_counter`) in a CUDA graph after a few eager warm-up steps, then replays it for
every full batch: the batch is copied into the graph's static input, the learning rate into the
optimizer's device scalar, and the loss comes back as a device tensor (read back later, in bulk).
"""

from __future__ import annotations

import threading

import torch
from torch import nn


# One capture at a time per process: torch.cuda.graph synchronises the device and empties the cache
# before it begins, which would break another thread's capture in progress.
_CAPTURE_LOCK = threading.Lock()


class CapturedStep:
    """zero_grad + forward + loss + backward(loss * loss_scale) + optimizer.step() + counter += 1."""

    def __init__(self, model: nn.Module, optimizer, criterion, *, loss_scale: float, counter: torch.Tensor):
        self.model, self.optimizer, self.criterion = model, optimizer, criterion
        self.loss_scale, self.counter = loss_scale, counter
        self.graph: torch.cuda.CUDAGraph | None = None
        self._x = self._y = self._loss = None

    @property
    def ready(self) -> bool:
        return self.graph is not None

    def capture(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        """Record the step for batches shaped like (xb, yb); nothing runs until `replay`."""
        self._x, self._y = xb.clone(), yb.clone()
        graph = torch.cuda.CUDAGraph()
        # thread_local: cells training in other threads of this process go on while this one captures
        with _CAPTURE_LOCK, torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.optimizer.zero_grad()
            loss = self.criterion(self.model(self._x), self._y)
            (loss * self.loss_scale).backward()
            self.optimizer.step()
            self.counter.add_(1)
        self._loss = loss.detach()  # the output's memory, not the captured autograd graph
        self.graph = graph

    def replay(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """One step on (xb, yb); returns this step's loss (a device scalar, not read back)."""
        self._x.copy_(xb, non_blocking=True)
        self._y.copy_(yb, non_blocking=True)
        self.optimizer.sync_lr()
        self.graph.replay()
        return self._loss.detach().clone()
