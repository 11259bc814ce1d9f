"""``torchlime.Lime`` on piano rolls: which time x pitch-band cells make a small CNN say "melody"?

Synthetic piano rolls (time steps x pitches, note velocities in [0.5, 1]): every roll holds
scattered background notes; a "melody" roll (class 1) also holds a run of notes in the top
pitch band during the second quarter of the roll. That box is kept free of background
notes, and half of the rolls of both classes carry a decoy run of notes in the top band
later in the roll, so the class is decided by the box and nothing else. A small CNN learns
it in a few seconds.

``torchlime.Lime`` explains the CNN's probability of "melody" over a feature mask of
cells: time blocks x pitch bands (an octave each), baseline 0 (a removed cell is silent).
For one roll it is run next to ``captum.attr.Lime`` with the same ``torch.manual_seed``
(Captum's default surrogate and kernel, torchlime's drop-ins for them): the two agree to
float tolerance. Then a batch of rolls is explained in one call (masks from a
``torch.Generator``), and a figure shows each roll with its cells' weights over it.

Run: python examples/piano_roll_lime.py [--time-steps 64] [--pitches 48] [--rolls 4] [--out piano_roll_out]
(about 10 s on 2 idle CPU cores with the defaults).
"""

from __future__ import annotations

import argparse
import pathlib
import time
from collections.abc import Sequence

import torch
from captum._utils.models.linear_model import SkLearnLasso
from captum.attr import Lime as CaptumLime
from torch import Tensor, nn

import torchlime

CLASS_NAMES = ["no melody", "melody"]


# -- data ------------------------------------------------------------------------------------


def evidence_box(time_steps: int, pitches: int, time_block: int, band: int) -> tuple[slice, slice]:
    """Where a melody goes: the time blocks of the roll's second quarter, the top pitch band."""
    blocks = time_steps // time_block
    return slice(blocks // 4 * time_block, max(blocks // 2, blocks // 4 + 1) * time_block), slice(pitches - band, pitches)


def add_notes(roll: Tensor, count: int, times: slice, pitches: slice, generator: torch.Generator,
              *, run: bool = False) -> None:
    """Write ``count`` notes (2-5 steps long) into ``roll (T, P)`` inside the box; ``run``: one after another."""
    t, length = times.start, times.stop - times.start
    for _ in range(count):
        duration = int(torch.randint(2, 6, (), generator=generator))
        start = t if run else times.start + int(torch.randint(max(length - duration, 1), (), generator=generator))
        if start >= times.stop:
            break
        pitch = pitches.start + int(torch.randint(pitches.stop - pitches.start, (), generator=generator))
        roll[start : min(start + duration, times.stop), pitch] = 0.5 + 0.5 * float(torch.rand((), generator=generator))
        t = start + duration


def make_rolls(n: int, time_steps: int, pitches: int, time_block: int, band: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` rolls ``(n, 1, T, P)`` with labels ``(n,)``, alternating (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    box_t, box_p = evidence_box(time_steps, pitches, time_block, band)
    rolls = torch.zeros(n, 1, time_steps, pitches)
    for i in range(n):
        roll = rolls[i, 0]
        add_notes(roll, int(torch.randint(8, 20, (), generator=g)), slice(0, time_steps), slice(0, pitches), g)
        roll[box_t, box_p] = 0  # the box is the melody's alone
        if torch.rand((), generator=g) < 0.5:  # a decoy run: same band, later (in both classes)
            add_notes(roll, 8, slice(box_t.stop + time_block, time_steps), box_p, g, run=True)
        if i % 2:
            add_notes(roll, 8, box_t, box_p, g, run=True)
    return rolls, torch.arange(n) % 2


# -- model -----------------------------------------------------------------------------------


def small_cnn(time_steps: int, pitches: int) -> nn.Module:
    """Two 3x3 conv blocks with 2x2 pooling and a linear read-out (where a pattern is matters)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * (time_steps // 4) * (pitches // 4), 2),
    )


def train(model: nn.Module, rolls: Tensor, labels: Tensor, *, epochs: int, seed: int) -> nn.Module:
    """Cross-entropy with Adam, batches of 32 in a seeded order; returns the model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(rolls), generator=order).split(32):
            loss = nn.functional.cross_entropy(model(rolls[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def cell_mask(time_steps: int, pitches: int, time_block: int, band: int) -> Tensor:
    """Feature mask ``(1, 1, T, P)``: cell id ``time block * bands + pitch band``."""
    bands = pitches // band
    t = torch.arange(time_steps) // time_block
    p = torch.arange(pitches) // band
    return (t[:, None] * bands + p[None, :]).reshape(1, 1, time_steps, pitches)


# -- explaining ------------------------------------------------------------------------------


def run(
    time_steps: int = 64,
    pitches: int = 48,
    *,
    time_block: int = 8,
    band: int = 12,
    train_rolls: int = 512,
    epochs: int = 4,
    rolls: int = 4,
    n_samples: int = 500,
    perturbations_per_eval: int = 100,
    seed: int = 0,
    out: str | pathlib.Path | None = "piano_roll_out",
    log=print,
) -> dict:
    """Everything the script does; returns the numbers the test checks (see the module docstring)."""
    for name, value, size in (("time_block", time_block, time_steps), ("band", band, pitches)):
        if not 1 <= value <= size or size % value:
            raise ValueError(f"expected {name} to divide the roll's size {size}, got {value}")
    if time_steps % 4 or pitches % 4:
        raise ValueError(
            f"expected time_steps and pitches divisible by 4 (two 2x2 poolings), got {time_steps}, {pitches}"
        )
    start = time.perf_counter()
    x, y = make_rolls(train_rolls, time_steps, pitches, time_block, band, seed)
    torch.manual_seed(seed)
    model = train(small_cnn(time_steps, pitches), x, y, epochs=epochs, seed=seed)
    held_x, held_y = make_rolls(200, time_steps, pitches, time_block, band, seed + 1)
    with torch.no_grad():
        accuracy = float((model(held_x).argmax(-1) == held_y).float().mean())
    log(f"{train_rolls} rolls of {time_steps} steps x {pitches} pitches, CNN trained in "
        f"{time.perf_counter() - start:.1f} s; held-out accuracy {accuracy:.2f}")

    def forward(roll: Tensor) -> Tensor:
        return model(roll).softmax(-1)

    mask = cell_mask(time_steps, pitches, time_block, band)
    num_cells = int(mask.max()) + 1
    box_t, box_p = evidence_box(time_steps, pitches, time_block, band)
    evidence = torch.zeros(time_steps, pitches, dtype=torch.bool)
    evidence[box_t, box_p] = True
    evidence_cells = mask.reshape(-1)[evidence.reshape(-1)].unique()  # cells inside the box
    # melody rolls to explain (about half of them with a decoy)
    ex_x, ex_y = make_rolls(4 * rolls, time_steps, pitches, time_block, band, seed + 2)
    explain = ex_x[ex_y == 1][:rolls]
    settings = dict(target=1, n_samples=n_samples, perturbations_per_eval=perturbations_per_eval,
                    feature_mask=mask, baselines=0.0, return_input_shape=False)

    # One roll: Captum and torchlime, same seed, Captum's defaults (Lasso(alpha=0.01), cosine
    # kernel of width 1 on the inputs), each after one small untimed call.
    with torch.no_grad():
        captum_lime = CaptumLime(forward, interpretable_model=SkLearnLasso(alpha=0.01))
        our_lime = torchlime.Lime(forward)
        for lime in (captum_lime, our_lime):
            lime.attribute(explain[:1], **dict(settings, n_samples=10))
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        captum_attr = captum_lime.attribute(explain[:1], **settings)  # (1, cells)
        t_captum = time.perf_counter() - t0
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        our_attr = our_lime.attribute(explain[:1], **settings)
        t_ours = time.perf_counter() - t0
        # All rolls in one call, masks from a generator.
        t0 = time.perf_counter()
        weights = our_lime.attribute(explain, generator=torch.Generator().manual_seed(seed), **settings)  # (B, cells)
        t_batch = time.perf_counter() - t0
        probs = forward(explain)[:, 1]
    difference = float((our_attr - captum_attr).abs().max())
    log(f"feature mask: {time_steps // time_block} time blocks x {pitches // band} pitch bands = {num_cells} cells; "
        f"the melody's cells: {evidence_cells.tolist()}")
    log(f"roll 0: max |torchlime - captum| = {difference:.1e}; time: captum {t_captum * 1e3:.0f} ms, "
        f"torchlime {t_ours * 1e3:.0f} ms; {len(explain)} rolls in one torchlime call {t_batch * 1e3:.0f} ms")
    top = weights.topk(len(evidence_cells), dim=1).indices
    for i in range(len(explain)):
        log(f"roll {i}: p(melody) {float(probs[i]):.3f}; top cells {top[i].tolist()} "
            f"(weights {[round(v, 3) for v in weights[i, top[i]].tolist()]})")
    results = dict(accuracy=accuracy, captum=captum_attr, torchlime=our_attr, max_difference=difference,
                   cell_weights=weights, evidence_cells=evidence_cells, rolls=explain, probs=probs)
    if out is not None:
        path = pathlib.Path(out) / "piano_roll_lime.png"
        results["figure"] = plot(explain, weights, probs, mask, (box_t, box_p), path)
        log(f"wrote {results['figure']}")
    return results


def plot(rolls: Tensor, weights: Tensor, probs: Tensor, mask: Tensor, box: tuple[slice, slice],
         path: pathlib.Path) -> pathlib.Path:
    """Each roll ``(B, 1, T, P)`` with its cells' weights ``(B, cells)`` under its notes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    path.parent.mkdir(parents=True, exist_ok=True)
    B, _, T, P = rolls.shape
    per_value = weights[:, mask.reshape(-1)].reshape(B, T, P)  # every value gets its cell's weight
    limit = float(weights.abs().max().clamp_min(1e-6))
    cols = min(B, 2)
    fig, axes = plt.subplots((B + cols - 1) // cols, cols, figsize=(6.2 * cols, 4.2 * ((B + cols - 1) // cols)),
                             squeeze=False)
    edges_t = (mask[0, 0, :, 0].diff() != 0).nonzero().flatten() + 0.5
    edges_p = (mask[0, 0, 0, :].diff() != 0).nonzero().flatten() + 0.5
    for i, ax in enumerate(axes.flat):
        if i >= B:
            ax.axis("off")
            continue
        extent = (-0.5, T - 0.5, -0.5, P - 0.5)
        heat = ax.imshow(per_value[i].T.numpy(), origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto",
                         extent=extent, interpolation="nearest")
        notes = torch.where(rolls[i, 0] > 0, rolls[i, 0], torch.nan)
        ax.imshow(notes.T.numpy(), origin="lower", cmap="Greys", vmin=0, vmax=1, aspect="auto", extent=extent,
                  interpolation="nearest")
        for e in edges_t.tolist():
            ax.axvline(e, color="gray", lw=0.5, alpha=0.6)
        for e in edges_p.tolist():
            ax.axhline(e, color="gray", lw=0.5, alpha=0.6)
        t, p = box
        ax.add_patch(Rectangle((t.start - 0.5, p.start - 0.5), t.stop - t.start, p.stop - p.start, fill=False,
                               ls="--", lw=1.5, color="darkgreen", label="where the melody goes"))
        ax.set_xlabel("time step")
        ax.set_ylabel("pitch (0 = lowest)")
        ax.set_title(f"roll {i}: p(melody) = {float(probs[i]):.2f}", fontsize=10)
        ax.legend(loc="lower left", fontsize=8)
        fig.colorbar(heat, ax=ax, label="LIME weight of the cell, p(melody)")
    fig.suptitle("torchlime.Lime on piano rolls: cells of time blocks x pitch bands (notes in grey)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-steps", type=int, default=64, help="roll length (default: %(default)s)")
    parser.add_argument("--pitches", type=int, default=48, help="pitches (default: %(default)s)")
    parser.add_argument("--time-block", type=int, default=8, help="time steps per cell (default: %(default)s)")
    parser.add_argument("--band", type=int, default=12, help="pitches per cell (default: %(default)s)")
    parser.add_argument("--train-rolls", type=int, default=512, help="training rolls (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs (default: %(default)s)")
    parser.add_argument("--rolls", type=int, default=4, help="melody rolls explained (default: %(default)s)")
    parser.add_argument("--n-samples", type=int, default=500, help="LIME samples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--out", default="piano_roll_out", help="folder for the figure (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: %(default)s; the model is tiny, more only add overhead)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"expected --threads >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    run(args.time_steps, args.pitches, time_block=args.time_block, band=args.band, train_rolls=args.train_rolls,
        epochs=args.epochs, rolls=args.rolls, n_samples=args.n_samples, seed=args.seed, out=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
