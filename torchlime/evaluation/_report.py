"""Evaluation results as plain JSON-ready data (the CLI writes it; nothing here touches files)."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from ._music import ExplanationEvaluation
from ._stability import Stability

__all__ = ["evaluation_report"]

RANKING = "by weight for the explained label, highest first (positive evidence first); ties by the lower feature index"


def _plain(x: Any) -> Any:
    """Tensors to lists/floats, NaN and inf to None (strict JSON has neither)."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().tolist()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def evaluation_report(
    evaluation: ExplanationEvaluation,
    stability: Stability | None = None,
    *,
    label_names: dict[int, str] | None = None,
    settings: dict[str, Any] | None = None,
    absolute: bool = False,
) -> dict[str, Any]:
    """One song's metrics as a JSON-ready dict (``json.dump`` it).

    Args:
        evaluation: from :func:`evaluate_explanation`.
        stability: from :func:`stability` over explanations of the same labels (its K dim
            follows ``evaluation.labels``), or None.
        label_names: class index -> name.
        settings: how the metrics were computed (stored as ``settings``).
        absolute: whether the features were ranked by ``|weight|`` (for the ``ranking`` note).

    Returns:
        ``{"settings", "feature_names", "labels": {"label_<k>": {...}}}``; NaN becomes None.

    Example:
        >>> import torch
        >>> from torchlime.music import MusicLime, StemFactorization
        >>> audio = StemFactorization(torch.randn(4, 1, 800), sample_rate=8000, num_segments=2)
        >>> model = lambda a: torch.stack([a.pow(2).mean((1, 2)), a[:, 0, :400].pow(2).mean(-1)], 1)
        >>> explainer = MusicLime(model)
        >>> exp = explainer.explain(audio, target=[1], n_samples=50, modality="audio")
        >>> from torchlime.evaluation import evaluate_explanation
        >>> sorted(evaluation_report(evaluate_explanation(exp, explainer))["labels"]["label_1"])[:3]
        ['aopc', 'deletion_auc', 'deletion_curve']
    """
    f = evaluation.faithfulness
    names = evaluation.feature_names
    out: dict[str, Any] = {}
    for k, label in enumerate(evaluation.labels):
        steps = f.deletion.shape[-1] - 1
        entry: dict[str, Any] = {
            "label_name": (label_names or {}).get(label, str(label)),
            "deletion_order": [names[i] for i in f.order[k, :steps].tolist()],
            "deletion_curve": _plain(f.deletion[k]),
            "insertion_curve": _plain(f.insertion[k]),
            "aopc": _plain(f.aopc[k]),
            "deletion_auc": _plain(f.deletion_auc[k]),
            "insertion_auc": _plain(f.insertion_auc[k]),
            "r2_in_sample": _plain(evaluation.score[k]),
            "r2_heldout": _plain(evaluation.heldout_score[k]) if evaluation.heldout_score is not None else None,
        }
        if f.random_aopc is not None:
            entry.update(
                random_aopc=_plain(f.random_aopc[k]),
                random_deletion_curve=_plain(f.random_deletion[k]),
                random_insertion_curve=_plain(f.random_insertion[k]),
            )
        if stability is not None:
            entry["stability"] = {
                "seeds": stability.seeds,
                "top_k": stability.k,
                "mean_spearman": _plain(stability.mean_spearman[k]),
                "mean_jaccard": _plain(stability.mean_jaccard[k]),
                "pairs": [
                    {"runs": pair, "seeds": [stability.seeds[i] for i in pair] if stability.seeds else None,
                     "spearman": _plain(stability.spearman[p, k]), "jaccard": _plain(stability.jaccard[p, k])}
                    for p, pair in enumerate(stability.pairs.tolist())
                ],
            }
        out[f"label_{label}"] = entry
    ranking = RANKING.replace("by weight", "by |weight|") if absolute else RANKING
    return {"settings": {"ranking": ranking, **(settings or {})}, "feature_names": names, "labels": out}
