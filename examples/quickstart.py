"""Explain a small classifier with torchlime.Lime and print it next to captum.attr.Lime.

Both libraries draw the same masks from the same torch seed, so the two columns agree;
torchlime draws, composes, weights and fits them as batched tensor ops.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import time

import torch
from captum._utils.models.linear_model import SkLearnLasso
from captum.attr import Lime as CaptumLime

import torchlime


def main() -> None:
    torch.manual_seed(0)
    names = ["tempo", "loudness", "energy", "valence", "speech", "acoustic", "live", "dance"]
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3)).eval()
    x = torch.randn(1, 8)
    target = int(model(x).argmax())
    settings = dict(target=target, n_samples=2000, perturbations_per_eval=500, return_input_shape=False)

    # One small untimed call each, so the timings below leave out first-call set-up.
    torchlime.Lime(model).attribute(x, target=target, n_samples=10)
    CaptumLime(model, interpretable_model=SkLearnLasso(alpha=0.01)).attribute(x, target=target, n_samples=10)

    torch.manual_seed(1)
    start = time.perf_counter()
    ours = torchlime.Lime(model).attribute(x, **settings)
    t_ours = time.perf_counter() - start

    torch.manual_seed(1)
    start = time.perf_counter()
    ref = CaptumLime(model, interpretable_model=SkLearnLasso(alpha=0.01)).attribute(x, **settings)
    t_ref = time.perf_counter() - start

    print(f"Explaining class {target} of a small MLP, 8 features, 2000 samples\n")
    print(f"{'feature':<10}{'torchlime':>12}{'captum':>12}")
    for name, a, b in zip(names, ours[0].tolist(), ref[0].tolist()):
        print(f"{name:<10}{a:>12.5f}{b:>12.5f}")
    print(f"\nmax |difference| {float((ours - ref).abs().max()):.2e}")
    print(f"time: torchlime {t_ours * 1e3:.1f} ms, captum {t_ref * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
