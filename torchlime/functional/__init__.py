"""Pure tensor functions: sampling, distances and kernels, surrogate fits, lime's selection,
global importance, stems x segments composition.

No modules, no Captum, no I/O: every function takes leading batch dims and, where it
draws random numbers, a ``generator``.
"""

from .aggregation import Importance, ImportanceSums, feature_entropy, global_importance, global_importance_update
from .audio import pcm_to_float
from .evaluation import (
    aopc,
    area_under_curve,
    check_weights,
    deletion_masks,
    feature_ranking,
    insertion_masks,
    rankdata,
    spearman,
    topk_jaccard,
)
from .kernels import (
    cosine_distance,
    euclidean_distance,
    exp_kernel,
    group_statistics,
    hamming_distance,
    kernel_shap_weights,
    lime_kernel,
    mask_kernel_weights,
    masked_input_distance,
    pairwise_distance,
    shapley_kernel,
)
from .sampling import (
    LIME_SAMPLERS,
    SAMPLERS,
    Draw,
    MaskSampler,
    bernoulli_masks,
    captum_kernel_shap_masks,
    check_generator,
    check_masks,
    kernel_shap_masks,
    sample_masks,
    shapley_size_mass,
)
from .segments import compose_segments, even_boundaries, segment_feature_names
from .selection import FEATURE_SELECTION_MODES, FeatureSelection, lime_fit, select_features
from .surrogate import Moments, SurrogateFit, lasso, linear_regression, ridge, weighted_moments, weighted_r2

__all__ = [
    "SAMPLERS",
    "LIME_SAMPLERS",
    "Draw",
    "MaskSampler",
    "sample_masks",
    "captum_kernel_shap_masks",
    "shapley_size_mass",
    "bernoulli_masks",
    "kernel_shap_masks",
    "check_masks",
    "check_generator",
    "cosine_distance",
    "euclidean_distance",
    "hamming_distance",
    "pairwise_distance",
    "lime_kernel",
    "exp_kernel",
    "shapley_kernel",
    "kernel_shap_weights",
    "group_statistics",
    "masked_input_distance",
    "SurrogateFit",
    "Moments",
    "weighted_moments",
    "ridge",
    "linear_regression",
    "lasso",
    "weighted_r2",
    "FEATURE_SELECTION_MODES",
    "FeatureSelection",
    "select_features",
    "lime_fit",
    "Importance",
    "ImportanceSums",
    "global_importance_update",
    "global_importance",
    "feature_entropy",
    "check_weights",
    "feature_ranking",
    "deletion_masks",
    "insertion_masks",
    "aopc",
    "area_under_curve",
    "rankdata",
    "spearman",
    "topk_jaccard",
    "compose_segments",
    "even_boundaries",
    "segment_feature_names",
    "pcm_to_float",
    "mask_kernel_weights",
]
