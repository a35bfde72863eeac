"""BLAS held to one thread around the adaptive method's steps and inside its own threads (the knowledge
gradient's chunks, the calibration's held-out rows): its matrices are small, and BLAS's threads would
only fight the method's (and other processes') for the cores."""

from __future__ import annotations

from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None


def one_blas_thread():
    """A context in which BLAS runs on one thread.

    The BLAS libraries are looked up once, at the first call: `threadpoolctl.threadpool_limits` looks
    them up anew every time (about 0.6 ms here, on every session step). numpy's BLAS is loaded with
    numpy, so it is always found; a BLAS loaded only after the first call is left as it is.
    """
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")
