"""Benchmarks of the spatial correlation loss (issues: foundation slice, 15).

1. Share of a full training step (ResNet-18, batch of 32 images at 112 px, CPU, SGD) taken by the
   spatial loss at k = 1 and k = 8 neighbourhoods per layer, against the same step without it.
   The allocator is set up as ``topo_train`` sets it up (``trainer.tune_allocator``).
   The step of topo's default objective is measured (SimCLR: 32 images → 64 views, the spatial
   loss over all 64, as TDANN computes it; budgets k = 1 ≤ 2 %, k = 8 ≤ 10 %), and with
   ``--objectives simclr supervised`` the supervised one too (32 images).
2. The vectorised loss at k = 8 over eight layers against a straightforward loop over layers and
   neighbourhoods (TDANN-style corrcoef → lower triangles → Pearson), with equal values.

Prints one line per measurement: ``name: value unit (ratio X.XX vs <baseline>)``.
Run: ``python benchmarks/spatial_loss.py`` (about three minutes on 2 cores; ``--rounds``, 12 by
default, sets the ABBA rounds per k).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from topo_models import create_model
from topo_models.losses import SpatialCorrelationLoss, nt_xent_loss
from topo_models.positions import RetinotopicLayout
from topo_train.runtime import tune_cpu_allocator

IMAGES, SIZE, REPEATS = 32, 112, 7


def plain_neighbourhood_loss(responses: torch.Tensor, coordinates: torch.Tensor) -> torch.Tensor:
    """One neighbourhood, written the straightforward way (the baseline)."""
    centred = responses - responses.mean(dim=0)
    std = centred.pow(2).sum(dim=0).div(responses.shape[0] - 1).sqrt()
    std = torch.where(std == 0, torch.ones_like(std), std)
    corr = (centred.T @ centred / (responses.shape[0] - 1) / torch.outer(std, std)).clamp(-1, 1)
    similarity = 1 / (torch.cdist(coordinates, coordinates) + 1)
    rows, cols = torch.tril_indices(len(coordinates), len(coordinates), offset=-1)
    r, s = corr[rows, cols], similarity[rows, cols]
    r, s = r - r.mean(), s - s.mean()
    return (1 - (r @ s) / (r.norm() * s.norm())) / 2


def median_time(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_share(objective: str, losses: dict[int, SpatialCorrelationLoss], rounds: int) -> None:
    """Time steps with and without the loss, alternating in ABBA order, and the loss alone.

    The loss alone is its forward and backward on the step's features (leaves whose ``.grad``
    already holds a gradient, so the dense gradient of the gather is written, filled and added
    as in a step), timed after each pair of steps, in CPU and in wall time: the difference of
    two ~2 s steps scatters by a few % on a shared VM, the loss's own time much less. (Its small
    kernels keep both threads spinning at their barriers, so its CPU share exceeds its share of
    the wall time, the more so when other jobs share the cores.)
    """
    torch.manual_seed(0)
    head = "projector" if objective == "simclr" else "classifier"
    model = create_model("resnet18_spatial", head=head, num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    views = torch.randn(IMAGES, 2, 3, SIZE, SIZE)
    labels = torch.randint(0, 10, (IMAGES,))
    images = torch.cat([views[:, 0], views[:, 1]]) if objective == "simclr" else views[:, 0]
    with torch.no_grad():
        _, step_features = model(images)
    leaves = {name: f.requires_grad_() for name, f in step_features.items()}
    for leaf in leaves.values():
        leaf.grad = torch.zeros_like(leaf)

    walls: dict[str, list[float]] = {"step": [], "loss": []}

    def step(spatial: SpatialCorrelationLoss | None) -> float:
        # CPU time of all threads (less hit by the VM's neighbours than wall time); the plain
        # step's wall time too, for the wall-time share of the loss alone
        start, wall = time.process_time(), time.perf_counter()
        output, features = model(images)
        if objective == "simclr":
            loss = nt_xent_loss(output[:IMAGES], output[IMAGES:], 0.1)
        else:
            loss = F.cross_entropy(output, labels)
        if spatial is not None:
            loss = loss + spatial(features)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if spatial is None:
            walls["step"].append(time.perf_counter() - wall)
        return time.process_time() - start

    def alone(spatial: SpatialCorrelationLoss) -> float:
        start, wall = time.process_time(), time.perf_counter()
        spatial(leaves)[0].backward()
        walls["loss"].append(time.perf_counter() - wall)
        return time.process_time() - start

    plain: list[float] = []
    for k, spatial in losses.items():
        step(spatial), alone(spatial)  # warm-up
        with_loss, differences, own = [], [], []
        walls["loss"].clear()
        for round_index in range(rounds):
            if round_index % 2 == 0:
                a, b = step(None), step(spatial)
            else:
                b, a = step(spatial), step(None)
            own.append(alone(spatial))
            plain.append(a)
            with_loss.append(b)
            differences.append(b - a)
        # Interference only adds time: the cheapest step of each kind is the least noisy
        # estimate; the median of paired differences is printed beside it.
        fastest = min(plain)
        share = (min(with_loss) - fastest) / fastest
        paired = statistics.median(differences) / statistics.median(plain)
        own_share = statistics.median(own) / statistics.median(plain)
        own_wall = statistics.median(walls["loss"]) / statistics.median(walls["step"])
        budget = 2 if k == 1 else 10
        print(
            f"{objective} step ({IMAGES} images, {SIZE} px), spatial loss k={k}: "
            f"{100 * share:.2f} % of the step's CPU time (ratio {1 + share:.3f} vs the same step "
            f"without it, {fastest * 1000:.0f} ms CPU; budget {budget} %; median paired "
            f"difference {100 * paired:.2f} %)\n  the loss alone: {100 * own_share:.2f} % of the "
            f"median step's CPU time ({1000 * statistics.median(own):.1f} of "
            f"{statistics.median(plain) * 1000:.0f} ms), {100 * own_wall:.2f} % of its wall time "
            f"({1000 * statistics.median(walls['loss']):.1f} of "
            f"{1000 * statistics.median(walls['step']):.0f} ms); budget {budget} %"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--objectives",
        nargs="+",
        choices=("simclr", "supervised"),
        default=["simclr"],
    )
    parser.add_argument("--rounds", type=int, default=12, help="ABBA rounds per k and objective")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    # As topo's training loop does (trainer.tune_allocator): without it glibc hands freed
    # activation memory back and every step faults ~10,000 pages anew (see RESULTS.md).
    print(f"allocator tuned as in topo_train: {tune_cpu_allocator()}")
    trunk = create_model("resnet18_spatial")
    positions = RetinotopicLayout(n_neighborhoods=2000, seed=0).build(trunk, SIZE)
    weights = {name: 0.25 for name in positions}
    losses = {
        k: SpatialCorrelationLoss(positions, weights, neighborhoods_per_step=k, seed=0)
        for k in (1, 8)
    }
    for objective in args.objectives:
        step_share(objective, losses, args.rounds)

    # 2. Vectorised vs a loop over layers and neighbourhoods, same draws, equal values.
    _, features = trunk(torch.randn(IMAGES, 3, SIZE, SIZE))
    features = {k: v.detach().requires_grad_(True) for k, v in features.items()}
    spatial = losses[8]
    draws_state = spatial.generator.get_state()
    rows = spatial._draw_rows()

    def looped() -> torch.Tensor:
        total = 0.0
        for index, name in enumerate(spatial.layer_names):
            flat = features[name].flatten(1)
            coords = getattr(spatial, f"coordinates_{index}")
            values = [plain_neighbourhood_loss(flat[:, r], coords[r]) for r in rows[index]]
            total = total + 0.25 * torch.stack(values).mean()
        return total

    def vectorised() -> torch.Tensor:
        spatial.generator.set_state(draws_state)
        return spatial(features)[0]

    a, b = looped().item(), vectorised().item()
    assert abs(a - b) < 1e-5 * max(1.0, abs(a)), (a, b)
    t_loop = median_time(lambda: looped().backward())
    t_vec = median_time(lambda: vectorised().backward())
    print(
        f"loop over layers x neighbourhoods, k=8, fwd+bwd: {t_loop * 1000:.1f} ms "
        f"(ratio 1.00 vs itself; loss {a:.6f})"
    )
    print(
        f"vectorised spatial loss, k=8, fwd+bwd: {t_vec * 1000:.1f} ms "
        f"(ratio {t_loop / t_vec:.2f} vs the loop; loss {b:.6f})"
    )


if __name__ == "__main__":
    main()
