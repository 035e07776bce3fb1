"""Study ``input_grad``: per-sample gradients of a network's output with respect to its inputs (lazy names)."""

from gradlab.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "METHODS": "gradlab.studies.input_grad.methods",
        "per_sample_input_grad": "gradlab.studies.input_grad.methods",
        "per_sample_input_grad_and_outputs": "gradlab.studies.input_grad.methods",
        "auto_method": "gradlab.studies.input_grad.methods",
        "batch_jacobian": "gradlab.studies.input_grad.methods",
        "central_differences": "gradlab.studies.input_grad.methods",
        "couples_samples": "gradlab.studies.input_grad.batchnorm",
        "coupling_layers": "gradlab.studies.input_grad.batchnorm",
        "random_layers": "gradlab.studies.input_grad.batchnorm",
        "no_running_stat_updates": "gradlab.studies.input_grad.batchnorm",
    },
)
