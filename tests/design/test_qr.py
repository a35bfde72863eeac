"""Tests for the QR baseline: pivots, and fresh blocks beyond k."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from peppp.design import QRDesign


def test_first_k_are_the_pivots_then_fresh_blocks():
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((4, 30))
    design = QRDesign().select(Y, 10)
    _, pivots = scipy.linalg.qr(Y, mode="r", pivoting=True)
    assert design[:4].tolist() == pivots[:4].tolist()
    rest = np.setdiff1d(np.arange(30), design[:4])
    _, second = scipy.linalg.qr(Y[:, rest], mode="r", pivoting=True)
    assert design[4:8].tolist() == rest[second[:4]].tolist()
    assert len(set(design.tolist())) == 10


def test_n_below_k_is_a_prefix():
    rng = np.random.default_rng(1)
    Y = rng.standard_normal((6, 30))
    assert QRDesign().select(Y, 3).tolist() == QRDesign().select(Y, 6)[:3].tolist()
