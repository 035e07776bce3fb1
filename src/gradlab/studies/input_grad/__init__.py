"""Study ``input_grad``: per-sample gradients of a network's output with respect to its inputs."""

from gradlab.studies.input_grad.batchnorm import couples_samples, no_running_stat_updates
from gradlab.studies.input_grad.methods import METHODS, batch_jacobian, central_differences, per_sample_input_grad

__all__ = [
    "METHODS",
    "per_sample_input_grad",
    "batch_jacobian",
    "central_differences",
    "couples_samples",
    "no_running_stat_updates",
]
