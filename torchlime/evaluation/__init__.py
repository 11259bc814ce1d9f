"""Evaluation of explanations: faithfulness, stability across seeds, surrogate fidelity.

- :func:`faithfulness`: deletion and insertion curves, AOPC (Samek et al. 2017) and curve
  areas, for any ``masks -> outputs`` function, in one chunked batched forward.
- :func:`stability`: rerun an explainer with R seeds; pairwise Spearman rank correlation and
  top-k Jaccard of the weights.
- :func:`fidelity`: weighted R^2 of the linear surrogate against the model.
- :func:`evaluate_explanation`: all of it for a MusicLime :class:`~torchlime.music.Explanation`
  on its song (``torchlime evaluate`` on the command line).

"Top" features are the highest weights for the explained target (positive evidence first),
ties broken by the lower feature index; ``absolute=True`` ranks by ``|weight|``. The tensor
math lives in :mod:`torchlime.functional.evaluation`.

Example:
    >>> import torch
    >>> from torchlime.evaluation import faithfulness
    >>> w = torch.tensor([0.5, 2.0, -1.0])
    >>> faithfulness(lambda z: z @ w, w).deletion
    tensor([ 1.5000, -0.5000, -1.0000,  0.0000])
"""

from ._faithfulness import Faithfulness, faithfulness
from ._fidelity import fidelity
from ._music import ExplanationEvaluation, evaluate_explanation, explanation_forward, load_explanation
from ._report import evaluation_report
from ._stability import Stability, stability, stability_from_weights

__all__ = [
    "Faithfulness",
    "faithfulness",
    "Stability",
    "stability",
    "stability_from_weights",
    "fidelity",
    "ExplanationEvaluation",
    "evaluate_explanation",
    "explanation_forward",
    "load_explanation",
    "evaluation_report",
]
