"""Device-independent proxies of the explainers' fixed costs, callable on their own.

:func:`explainer_ops` counts the operator calls (aten calls, nested included), kernels and
scalar reads of one ``torchlime.Lime``/``KernelShap`` ``attribute`` call per phase of the
engine's ``record_function`` ranges (``torchlime.transform``, ``.forward``, ``.kernel``,
``.fit``; the model in a ``bench.model`` range; ``other`` outside them), read from
``torch.profiler`` (:mod:`benchmarks._profile`). :func:`lime_fit_ops` is the number issue
16 tracks: the kernels of ``Lime``'s default lasso fit at n = 1000, which grow with the
solver's iterations while it is FISTA. On a CPU "kernels" are the computing aten calls
(what would be a launch on a GPU); on CUDA they are the device kernels launched.

From the repository root::

    python -m benchmarks.proxies                       # Lime, n = 1000, 64 scalar features, CPU
    python -m benchmarks.proxies --method kernel_shap --n-samples 5000 --device cuda

or from Python::

    >>> from benchmarks.proxies import lime_fit_ops
    >>> lime_fit_ops()["fit"]["kernels"]  # doctest: +SKIP
    1139
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch

from ._fixtures import LinearForward
from ._profile import profile_phases, ranged

__all__ = ["explainer_ops", "lime_fit_ops", "main"]

PHASE_ORDER = ("transform", "model", "forward", "kernel", "fit", "other")


def explainer_ops(method: str = "lime", n_samples: int = 1000, num_features: int = 64, *,
                  device: torch.device | str = "cpu", perturbations_per_eval: int = 100,
                  interpretable_model: Any = None, seed: int = 0) -> dict[str, dict[str, float]]:
    """Operator calls per phase of one ``attribute`` call on a ``(1, num_features)`` input.

    The model is a fixed linear map to 4 classes (target 1), the feature mask Captum's
    default (one feature per value), the masks drawn with ``generator`` seeded ``seed``;
    one warm-up call first.

    Args:
        method: "lime" (``torchlime.Lime``, default lasso unless ``interpretable_model``)
            or "kernel_shap".
        n_samples: perturbations.
        num_features: F.
        device: where the input, the model and the explainer run.
        perturbations_per_eval: samples per forward call.
        interpretable_model: for "lime", instead of the default lasso.
        seed: the generator's seed.

    Returns:
        ``{phase: {"ops", "kernels", "scalar_reads", "cpu_time_s", "device_time_s"}}`` for
        the phases present, and ``"total"``.
    """
    import torchlime

    if method not in ("lime", "kernel_shap"):
        raise ValueError(f"expected method 'lime' or 'kernel_shap', got {method!r}")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, num_features, generator=gen).to(device)
    forward = ranged("model", LinearForward(torch.randn(num_features, 4, generator=gen).to(device)))
    if method == "lime":
        explainer = torchlime.Lime(forward, interpretable_model=interpretable_model)
    else:
        explainer = torchlime.KernelShap(forward)

    def call(s: int) -> Any:
        return explainer.attribute(x, target=1, n_samples=n_samples, perturbations_per_eval=perturbations_per_eval,
                                   generator=torch.Generator(device).manual_seed(s))

    call(seed + 1)
    profile, _ = profile_phases(lambda: call(seed), device)
    keys = ("ops", "kernels", "scalar_reads", "cpu_time_s", "device_time_s")
    out = {k: {kk: v[kk] for kk in keys} for k, v in profile["phases"].items()}
    out["total"] = {k: profile["total"][k] for k in keys}
    return out


def lime_fit_ops(n_samples: int = 1000, num_features: int = 64, *, device: torch.device | str = "cpu",
                 perturbations_per_eval: int = 100) -> dict[str, dict[str, float]]:
    """:func:`explainer_ops` of ``torchlime.Lime`` with its default model (the lasso); read ``["fit"]``."""
    return explainer_ops("lime", n_samples, num_features, device=device, perturbations_per_eval=perturbations_per_eval)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Print one explainer call's operator counts per phase."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxies", description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=("lime", "kernel_shap"), default="lime")
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--perturbations-per-eval", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    ops = explainer_ops(args.method, args.n_samples, args.features, device=args.device,
                        perturbations_per_eval=args.perturbations_per_eval)
    print(f"{args.method}, n = {args.n_samples}, F = {args.features}, {args.perturbations_per_eval} per forward, "
          f"{args.device}, torch threads {torch.get_num_threads()}")
    print(f"{'phase':10s} {'ops':>8s} {'kernels':>8s} {'scalar reads':>13s} {'time':>10s}")
    for phase in [p for p in PHASE_ORDER if p in ops] + [p for p in ops if p not in PHASE_ORDER]:
        v = ops[phase]
        print(f"{phase:10s} {v['ops']:8.0f} {v['kernels']:8.0f} {v['scalar_reads']:13.0f} "
              f"{max(v['cpu_time_s'], v['device_time_s']) * 1e3:8.2f} ms")
    return ops


if __name__ == "__main__":
    main(sys.argv[1:])
