"""TopoLoss against a numpy reference (explicit sheet layout, resize matrices, a cosine per unit),
hand-worked sheets, the expected value on random weights, gradients, the TopoLoss object and
every refused input; the reference package ``topoloss`` where it is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from topo_models import TopoError
from topo_models.losses.topoloss import (
    TopoLoss,
    cortical_sheet,
    laplacian_pyramid_loss,
    sheet_shape,
)


def resize_matrix(n_in: int, n_out: int, scale: float, mode: str) -> np.ndarray:
    """(n_out, n_in) 1-D resampling operator, written from torch's documented conventions:
    bilinear with align_corners=False samples at (i + ½)·scale − ½ (clamped at 0); nearest
    takes floor(i·scale); antialiased is PIL's triangle filter stretched by the scale."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        if mode == "bilinear":
            src = max((i + 0.5) * scale - 0.5, 0.0)
            i0 = int(math.floor(src))
            i1 = min(i0 + 1, n_in - 1)
            lam = src - i0
            m[i, i0] += 1 - lam
            m[i, i1] += lam
        elif mode == "nearest":
            m[i, min(int(math.floor(i * scale)), n_in - 1)] = 1.0
        else:
            support = max(scale, 1.0)
            centre = scale * (i + 0.5)
            lo = max(int(centre - support + 0.5), 0)
            hi = min(int(centre + support + 0.5), n_in)
            for j in range(lo, hi):
                m[i, j] = max(0.0, 1 - abs((j - centre + 0.5) / support))
            m[i] /= m[i].sum()
    return m


def blur_matrices(h: int, w: int, fh: float, fw: float, mode: str) -> tuple[np.ndarray, ...]:
    """(h, h) and (w, w) down-then-up operators of the sheet's rows and columns."""
    up = "nearest" if mode == "nearest" else "bilinear"
    mats = []
    for side, factor in ((h, fh), (w, fw)):
        coarse = int(math.floor(side / factor))
        down = resize_matrix(side, coarse, factor, mode)
        mats.append(resize_matrix(coarse, side, coarse / side, up) @ down)
    return tuple(mats)


def numpy_topoloss(weight: np.ndarray, fh: float, fw: float, mode: str) -> float:
    """1 − mean over units of cos(unit's weights, blurred sheet at the unit), unit by unit."""
    n = weight.shape[0]
    h = max(d for d in range(1, int(math.sqrt(n)) + 1) if n % d == 0)
    w = n // h
    sheet = np.zeros((h, w, weight[0].size))
    for u in range(n):
        sheet[u // w, u % w] = weight[u].ravel()
    mh, mw = blur_matrices(h, w, fh, fw, mode)
    blurred = np.einsum("ra,cb,abd->rcd", mh, mw, sheet)
    cosines = []
    for r in range(h):
        for c in range(w):
            a, b = sheet[r, c], blurred[r, c]
            cosines.append(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return 1 - float(np.mean(cosines))


CASES = [
    # weight shape, factor_h, factor_w; coarse sheets of more than h + w units take the plain
    # path of the loss (blurred sheet formed), smaller ones the fast coarse-sheet path
    ((64, 7), 2, 2),
    ((64, 7), 4, 8),
    ((12, 5), 3, 2),  # 3 × 4 sheet
    ((1000, 6), 5, 8),  # 25 × 40 sheet
    ((18, 4, 3, 3), 3, 2),  # 3 × 6 sheet of conv filters
    ((128, 3, 1, 1), 8, 4),  # 8 × 16 sheet
    ((36, 9), 1, 1),  # no blur (plain path)
    ((256, 5), 2, 2),  # 16 × 16 → 8 × 8 (plain path)
    ((1000, 3), 2, 3),  # 25 × 40 → 12 × 13 (plain path)
    ((64, 7), 2.5, 1.5),  # factors that do not divide the sides: 8 × 8 → 3 × 5
    ((24, 5), 4, 1),  # 4 × 6 → 1 × 6
    ((24, 5), 2, 6),  # 4 × 6 → 2 × 1 (torch's antialiased kernel fails here, see the loss)
]


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "antialiased"])
@pytest.mark.parametrize(("shape", "fh", "fw"), CASES)
def test_loss_matches_numpy_reference(shape, fh, fw, interpolation) -> None:
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = laplacian_pyramid_loss(weight, fh, fw, interpolation).item()
    assert got == pytest.approx(numpy_topoloss(weight.numpy(), fh, fw, interpolation), abs=1e-10)


def test_float32_matches_float64() -> None:
    weight = torch.randn(256, 40, generator=torch.Generator().manual_seed(2))
    got = laplacian_pyramid_loss(weight, 4, 4).item()
    assert got == pytest.approx(laplacian_pyramid_loss(weight.double(), 4, 4).item(), abs=1e-6)


def test_hand_worked_two_by_two_sheet() -> None:
    # units (0,0)=e1 (0,1)=e2 (1,0)=e1 (1,1)=e2; factor 2 shrinks the sheet to one pixel
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    # bilinear samples the centre, (½, ½): the mean (½, ½) everywhere; cos = 1/√2 per unit
    assert laplacian_pyramid_loss(weight, 2, 2).item() == pytest.approx(1 - 1 / math.sqrt(2))
    # antialiasing averages the same 2 × 2 footprint with equal weights
    antialiased = laplacian_pyramid_loss(weight, 2, 2, "antialiased").item()
    assert antialiased == pytest.approx(1 - 1 / math.sqrt(2))
    # nearest keeps unit (0,0) = e1 everywhere: cosines 1, 0, 1, 0
    assert laplacian_pyramid_loss(weight, 2, 2, "nearest").item() == pytest.approx(0.5)


def test_bilinear_point_samples_four_units_at_factor_eight() -> None:
    # 8 × 8 sheet → 1 pixel sampled at (3.5, 3.5): the mean of units (3,3) (3,4) (4,3) (4,4),
    # up-sampled everywhere. With near-orthogonal random units those four have cos ≈ ½ and the
    # other 60 cos ≈ 0: loss ≈ 1 − 4 · ½ / 64; antialiasing averages all 64 units instead.
    weight = torch.randn(64, 20000, generator=torch.Generator().manual_seed(3))
    assert laplacian_pyramid_loss(weight, 8, 8).item() == pytest.approx(1 - 2 / 64, abs=0.01)
    antialiased = laplacian_pyramid_loss(weight, 8, 8, "antialiased").item()
    assert 0.8 < antialiased < 1 - 2 / 64


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "antialiased"])
def test_random_sheet_value_is_the_expected_one(interpolation) -> None:
    # For D → ∞ independent random units, cos(w_u, Σ_v M_uv w_v) → M_uu / ‖M_u‖: the value
    # follows from the blur operator M alone (a 16 × 16 sheet, factor 4).
    weight = torch.randn(256, 20000, generator=torch.Generator().manual_seed(4))
    mh, mw = blur_matrices(16, 16, 4, 4, interpolation)
    m = np.kron(mh, mw)  # (256, 256), row-major units
    expected = 1 - np.mean(np.diag(m) / np.linalg.norm(m, axis=1))
    got = laplacian_pyramid_loss(weight, 4, 4, interpolation).item()
    assert 0 < got < 2
    assert got == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "antialiased"])
@pytest.mark.parametrize(("shape", "fh", "fw"), CASES)
def test_constant_sheet_gives_zero(shape, fh, fw, interpolation) -> None:
    vector = torch.randn(shape[1:], generator=torch.Generator().manual_seed(5))
    weight = vector.expand(shape).clone()
    assert laplacian_pyramid_loss(weight, fh, fw, interpolation).item() == pytest.approx(
        0.0, abs=1e-6
    )


@pytest.mark.parametrize(
    ("units", "expected"),
    [(64, (8, 8)), (1000, (25, 40)), (256, (16, 16)), (2048, (32, 64)), (12, (3, 4)), (6, (2, 3))],
)
def test_sheet_is_the_most_square_factorisation(units, expected) -> None:
    assert sheet_shape(units) == expected
    h, w = expected
    assert h * w == units and h <= w
    assert not any(units % d == 0 for d in range(h + 1, math.isqrt(units) + 1))


def test_sheet_is_row_major_over_flattened_filters() -> None:
    weight = torch.randn(18, 4, 3, 3)  # 3 × 6 sheet
    sheet = cortical_sheet(weight)
    assert sheet.shape == (3, 6, 36)
    for u in range(18):
        assert torch.equal(sheet[u // 6, u % 6], weight[u].flatten())


def test_loss_sees_units_row_major() -> None:
    # 12 units on a 3 × 4 sheet. Features that depend only on the column (u % 4) are unchanged
    # by a blur along the rows alone, and vice versa; a column-major layout would break both.
    columns = torch.eye(4)[torch.arange(12) % 4] + 0.1
    rows = torch.eye(3)[torch.arange(12) // 4] + 0.1
    assert laplacian_pyramid_loss(columns, 3, 1).item() == pytest.approx(0.0, abs=1e-6)
    assert laplacian_pyramid_loss(rows, 1, 4).item() == pytest.approx(0.0, abs=1e-6)
    assert laplacian_pyramid_loss(columns, 1, 4).item() > 0.1
    assert laplacian_pyramid_loss(rows, 3, 1).item() > 0.1


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "antialiased"])
@pytest.mark.parametrize(
    ("shape", "fh", "fw"), [((24, 3), 2, 3), ((24, 2, 1, 2), 2, 6), ((100, 2), 2, 2)]
)
def test_gradient_matches_finite_differences(shape, fh, fw, interpolation) -> None:
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    weight.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: laplacian_pyramid_loss(x, fh, fw, interpolation), (weight,)
    )


def test_autocast_leaves_the_loss_in_the_weights_dtype() -> None:
    weight = torch.randn(64, 30, requires_grad=True)
    expected = laplacian_pyramid_loss(weight, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = laplacian_pyramid_loss(weight, 4, 4)
    assert value.dtype == torch.float32 and value.item() == pytest.approx(expected.item())
    value.backward()
    assert weight.grad.dtype == torch.float32


class Trunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)  # 4 × 4 sheet
        self.norm = nn.BatchNorm2d(16)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16, 24))  # 4 × 6 sheet
        self.prime = nn.Linear(24, 13)


def test_gradient_reaches_the_weights_and_training_lowers_the_loss() -> None:
    torch.manual_seed(6)
    model = Trunk()
    loss = TopoLoss({"conv": 1.0, "head.1": 0.5}, factor_h=2, factor_w=2)
    total, _ = loss(model)
    total.backward()
    for module in (model.conv, model.head[1]):
        assert module.weight.grad is not None
        assert torch.isfinite(module.weight.grad).all() and module.weight.grad.abs().sum() > 0
    assert model.conv.bias.grad is None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    start = total.item()
    for _ in range(20):
        optimizer.zero_grad()
        loss(model)[0].backward()
        optimizer.step()
    assert loss(model)[0].item() < 0.5 * start


def test_object_sums_weighted_layer_values() -> None:
    model = Trunk()
    factor_h = {"conv": 4, "head.1": 2}
    loss = TopoLoss(
        {"conv": 2.0, "head.1": 0.25}, factor_h=factor_h, factor_w=3, interpolation="nearest"
    )
    total, per_layer = loss(model)
    conv = laplacian_pyramid_loss(model.conv.weight, 4, 3, "nearest")
    head = laplacian_pyramid_loss(model.head[1].weight, 2, 3, "nearest")
    assert list(per_layer) == ["conv", "head.1"]
    assert per_layer["conv"].item() == pytest.approx(conv.item())
    assert per_layer["head.1"].item() == pytest.approx(head.item())
    assert not any(v.requires_grad for v in per_layer.values())
    assert total.item() == pytest.approx(2.0 * conv.item() + 0.25 * head.item())


def test_zero_weight_layer_is_logged_not_trained() -> None:
    model = Trunk()
    total, per_layer = TopoLoss({"conv": 0.0, "head.1": 1.0}, factor_h=2, factor_w=2)(model)
    total.backward()
    assert model.conv.weight.grad is None and model.head[1].weight.grad is not None
    assert per_layer["conv"].item() > 0
    total, _ = TopoLoss({"conv": 0.0}, factor_h=2, factor_w=2)(model)
    assert total.item() == 0.0
    total.backward()  # accepted, reaches no parameter
    assert model.conv.weight.grad is None


def test_wrapped_model_is_unwrapped() -> None:
    model = Trunk()
    loss = TopoLoss({"conv": 1.0}, factor_h=2, factor_w=2)
    assert loss(nn.DataParallel(model))[0].item() == pytest.approx(loss(model)[0].item())


def raises(match: str):
    return pytest.raises(TopoError, match=match)


def test_unknown_layer_is_refused_before_training() -> None:
    model = Trunk()
    before = model.conv.weight.detach().clone()
    loss = TopoLoss({"conv": 1.0, "layer9.conv": 1.0}, factor_h=2, factor_w=2)
    with raises(r"does not have(.|\n)*layer_weights\.layer9\.conv(.|\n)*'conv'"):
        loss.check(model)
    with raises("layer9.conv"):
        loss(model)
    assert torch.equal(model.conv.weight, before)


def test_layer_of_another_type_is_refused() -> None:
    with raises(r"Linear or Conv2d(.|\n)*layer_weights\.norm(.|\n)*BatchNorm2d"):
        TopoLoss({"norm": 1.0}, factor_h=1, factor_w=1)(Trunk())


def test_factor_larger_than_the_sheet_side_is_refused() -> None:
    with raises(r"factor_h is larger(.|\n)*conv(.|\n)*factor_h <= 4 \(sheet 4 × 4 of 16(.|\n)*= 5"):
        TopoLoss({"conv": 1.0}, factor_h=5, factor_w=2)(Trunk())
    with raises(r"factor_w is larger(.|\n)*head\.1(.|\n)*factor_w <= 6(.|\n)*= 7"):
        TopoLoss({"head.1": 1.0}, factor_h=1, factor_w={"head.1": 7})(Trunk())
    with raises("factor_w <= 40"):
        laplacian_pyramid_loss(torch.randn(1000, 3), 2, 41)


def test_prime_unit_count_is_refused() -> None:
    with raises(r"prime(.|\n)*prime(.|\n)*13 units \(sheet 1 × 13\)"):
        TopoLoss({"prime": 1.0}, factor_h=1, factor_w=2)(Trunk())
    with raises("prime"):
        laplacian_pyramid_loss(torch.randn(7, 3), 1, 1)
    with raises("prime"):
        laplacian_pyramid_loss(torch.randn(1, 3), 1, 1)
    with raises("needs units"):
        laplacian_pyramid_loss(torch.randn(0, 3), 1, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layer_weights": {}}, "at least one layer"),
        ({"layer_weights": {"conv": -1.0}}, "layer_weights.conv"),
        ({"layer_weights": {"conv": float("nan")}}, "layer_weights.conv"),
        ({"factor_h": 0.5}, "factor_h"),
        ({"factor_w": float("inf")}, "factor_w"),
        ({"factor_h": {"head.1": 2}}, r"exactly the layers(.|\n)*\['conv'\]"),
        ({"interpolation": "bicubic"}, "bicubic"),
    ],
)
def test_bad_construction_is_refused(kwargs, match) -> None:
    arguments = {"layer_weights": {"conv": 1.0}, "factor_h": 2, "factor_w": 2} | kwargs
    with raises(match):
        TopoLoss(**arguments)


def test_weight_of_another_rank_is_refused() -> None:
    with raises(r"Linear or Conv2d(.|\n)*\(16, 3, 5\)"):
        laplacian_pyramid_loss(torch.randn(16, 3, 5), 2, 2)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_matches_the_topoloss_package(interpolation) -> None:
    topoloss = pytest.importorskip("topoloss")
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3), nn.Conv2d(64, 128, 3), nn.Linear(8, 1000), nn.Linear(8, 256)
    )
    factors = {"0": (2, 4), "1": (8, 3), "2": (5, 8), "3": (2, 2)}  # "3": plain path
    theirs = topoloss.TopoLoss(
        [
            topoloss.LaplacianPyramid(name, factor_h=fh, factor_w=fw, interpolation=interpolation)
            for name, (fh, fw) in factors.items()
        ]
    ).compute(model, reduce_mean=False)
    ours = TopoLoss(
        dict.fromkeys(factors, 1.0),
        factor_h={name: fh for name, (fh, _) in factors.items()},
        factor_w={name: fw for name, (_, fw) in factors.items()},
        interpolation=interpolation,
    )(model)[1]
    for name in factors:
        assert ours[name].item() == pytest.approx(theirs[name].item(), abs=1e-6)
