"""Pure tensor functions: the LIME engine, sampling, kernels, surrogate fits and their
standard errors, lime's selection, global importance, stems x segments composition,
evaluation math.

No modules, no Captum, no I/O: every function takes leading batch dims and, where it
draws random numbers, a ``generator``. ``__all__`` lists what users call; the helpers the
explainers share (input checks, Lime's distance statistics, Captum's random stream) stay in
their modules.

Shape glossary: B instances, n perturbation samples, F interpretable features, K targets,
S stems, G segments, C channels, T audio samples, L lyric units, Q tokens.

Argument glossary: ``perturbations_per_eval`` perturbation rows per forward call (Captum's
name); ``batch_size`` / B instances explained together; ``n_samples`` / n perturbations
per instance; ``coef`` surrogate coefficients (an explanation's weights);
``sample_weight`` kernel weights of the perturbations (scikit-learn's name); ``target``
the class index argument (Captum's); ``label`` a class an explanation holds;
``forward_func`` the model; ``generator`` the source of randomness.
"""

from .aggregation import Importance, ImportanceSums, feature_entropy, global_importance, global_importance_update
from .audio import pcm_to_float
from .engine import Budget, explain_auto, explain_masks, model_outputs, parse_target, stable_top_k
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
from .uncertainty import sandwich_stderr

__all__ = [
    # the engine
    "explain_masks",
    "model_outputs",
    "Budget",
    "stable_top_k",
    # masks
    "SAMPLERS",
    "LIME_SAMPLERS",
    "Draw",
    "MaskSampler",
    "sample_masks",
    "bernoulli_masks",
    "kernel_shap_masks",
    # distances and kernels
    "cosine_distance",
    "euclidean_distance",
    "hamming_distance",
    "pairwise_distance",
    "lime_kernel",
    "mask_kernel_weights",
    "exp_kernel",
    "shapley_kernel",
    "kernel_shap_weights",
    # surrogate fits and their uncertainty
    "SurrogateFit",
    "ridge",
    "linear_regression",
    "lasso",
    "weighted_r2",
    "sandwich_stderr",
    "FEATURE_SELECTION_MODES",
    "FeatureSelection",
    "select_features",
    "lime_fit",
    # global importance
    "ImportanceSums",
    "global_importance_update",
    "Importance",
    "global_importance",
    "feature_entropy",
    # evaluation
    "feature_ranking",
    "deletion_masks",
    "insertion_masks",
    "aopc",
    "area_under_curve",
    "spearman",
    "topk_jaccard",
    # stems x segments and audio
    "compose_segments",
    "even_boundaries",
    "segment_feature_names",
    "pcm_to_float",
]
