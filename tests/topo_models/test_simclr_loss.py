"""NT-Xent against a direct per-view computation."""

from __future__ import annotations

import math

import pytest
import torch

from topo_models.losses import NTXentLoss, nt_xent_loss


def reference_nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float) -> float:
    z = torch.nn.functional.normalize(torch.cat([a, b]).double(), dim=1)
    n = a.shape[0]
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        sims = [(z[i] @ z[j]).item() / tau for j in range(2 * n) if j != i]  # 1 pos + 2n-2 negs
        total += -(z[i] @ z[positive]).item() / tau + math.log(sum(math.exp(s) for s in sims))
    return total / (2 * n)


def test_nt_xent_matches_per_view_formula():
    torch.manual_seed(0)
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    assert nt_xent_loss(a, b, 0.1).item() == pytest.approx(reference_nt_xent(a, b, 0.1), rel=1e-5)
    assert NTXentLoss(0.5)(a, b).item() == pytest.approx(reference_nt_xent(a, b, 0.5), rel=1e-5)


def test_identical_views_far_from_others_give_low_loss():
    a = torch.eye(6) * 10
    assert nt_xent_loss(a, a.clone(), 0.1).item() < 1e-3
