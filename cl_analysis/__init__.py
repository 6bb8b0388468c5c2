"""cl_analysis: the behaviour of contrastive loss (Wang & Liu, CVPR 2021; SimCLR), executable.

The analysis core (no training) is imported here: ``losses``, ``gradients``, ``metrics``. The
layers above it are imported on use: ``cl_analysis.training`` (config, data, models, pretrain),
``cl_analysis.evaluation``, ``cl_analysis.study`` (profiles, sweeps, runs, claims),
``cl_analysis.plots``; see docs/architecture.md.
"""

from . import gradients, losses, metrics
from .gradients import (
    effective_negatives,
    gradient_ratio,
    penalty_entropy,
    similarity_gradient,
    truncated_gradient_ratio,
)
from .losses import (
    cosine_similarity,
    hard_info_nce,
    hard_simple,
    info_nce,
    nt_xent,
    simclr_similarity,
    simple,
    tau_zero_limit,
)
from .metrics import alignment, knn_accuracy, local_separation, tolerance, uniformity

__version__ = "0.1.0"

__all__ = [
    "losses", "gradients", "metrics",
    "info_nce", "simple", "hard_info_nce", "hard_simple", "tau_zero_limit", "cosine_similarity",
    "simclr_similarity", "nt_xent",
    "similarity_gradient", "gradient_ratio", "truncated_gradient_ratio", "penalty_entropy",
    "effective_negatives",
    "uniformity", "alignment", "tolerance", "local_separation", "knn_accuracy",
]
