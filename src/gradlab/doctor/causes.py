"""Cause classes of a first non-finite value: what went wrong, and what to change. One table, shared with the studies.

:data:`CAUSES` maps a cause name to a :class:`Cause` (a symptom, an explanation and a fix). The names the mdn study
uses for its trials (``nonfinite_input``, ``zero_scale``, ``log_of_underflowed_weight``, ``probability_underflow``,
``gradient_overflow``, ``weight_overflow``, ``loss_overflow``, ``bn_running_stats``, ``other``) are entries of
this table; :func:`classify` picks one from the evidence the doctor gathered about the first non-finite value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gradlab.doctor.facts import TensorFacts


@dataclass(frozen=True)
class Cause:
    """One cause class: ``symptom`` (what a user sees), ``why`` (what happened) and ``fix`` (what to change)."""

    name: str
    symptom: str
    why: str
    fix: str


_TABLE = [
    Cause(
        "nonfinite_input",
        "NaN from the first layer on, at a step set by the data order; even at learning rate 0",
        "a NaN or inf is already in the batch (a 0/0 while scaling, a missing value, a bad file)",
        "check the data: assert torch.isfinite(x).all() per batch, drop or impute the bad rows",
    ),
    Cause(
        "nonfinite_weights",
        "every output NaN from the start of a step",
        "a parameter was already NaN/inf when the step began (an earlier step, a checkpoint or an in-place edit)",
        "find the step that wrote it (run the doctor from the start); reload a finite checkpoint",
    ),
    Cause(
        "log_of_underflowed_weight",
        "finite loss, NaN gradient, then NaN weights",
        "log of a probability that underflowed to exactly 0 (a softmax of logits ~104 apart, a sigmoid of x < -88 "
        "in float32); TFP's Categorical(probs=) takes log(probs); log(0) = -inf and its backward is 0/0",
        "work with logits, not probabilities: log_softmax(logits), F.logsigmoid, Categorical(logits=...), "
        "BCEWithLogitsLoss, gradlab.nll(logits, ...)",
    ),
    Cause(
        "zero_scale",
        "NaN (or a validation error) as soon as a scale output is exactly 0",
        "a scale or standard deviation of exactly 0 (relu, or exp underflow): log(0) and (y - mu) / 0",
        "make scales positive: softplus(raw) + 1e-6 (gradlab.sigma_from(raw, 'softplus')), not relu or exp",
    ),
    Cause(
        "log_of_zero",
        "loss or gradient -inf / NaN where a quantity is exactly 0",
        "log of an exact 0 gives -inf, and its derivative 1/0",
        "compute in log space (log_softmax, logsumexp, log1p) or clamp: torch.log(x.clamp_min(1e-12))",
    ),
    Cause(
        "probability_underflow",
        "loss +inf / NaN for targets far from every component",
        "a sum of probabilities (densities) underflowed to 0 before its log",
        "stay in log space: log_softmax + logsumexp of log-densities",
    ),
    Cause(
        "masked_nonfinite_gradient",
        "finite loss, NaN gradient",
        "torch.where / indexing / masked_fill dropped a non-finite value from the forward pass, but the backward "
        "pass still multiplies the zero gradient of the unused branch by its infinite derivative (0 * inf = NaN)",
        "make the unused branch finite too: torch.where(m, torch.log(torch.where(m, x, 1.0)), 0.0)",
    ),
    Cause(
        "nan_gradient_at_zero",
        "finite loss, NaN gradient",
        "the derivative is infinite at exactly 0 (sqrt, a norm or x ** p with p < 1 of an exact 0): 0 * inf or 0/0",
        "add a small epsilon inside: torch.sqrt(x + 1e-12), (d * d).sum(-1).add(1e-12).sqrt()",
    ),
    Cause(
        "division_by_zero",
        "inf or NaN right after a division",
        "x / 0 = inf and 0 / 0 = NaN",
        "guard the denominator: x / d.clamp_min(eps), or skip the rows where d == 0",
    ),
    Cause(
        "zero_std",
        "NaN when a batch has one sample or constant values",
        "standardising by a standard deviation of 0 (a constant batch) or of a single sample (std with n - 1 = 0 "
        "is NaN)",
        "(x - x.mean()) / (x.std(unbiased=False) + 1e-8), and skip standardising when the batch has one element",
    ),
    Cause(
        "zero_norm",
        "NaN when a vector is all zeros",
        "normalising a zero vector: x / x.norm() is 0/0 (and the norm's gradient at 0 is 0/0 too)",
        "torch.nn.functional.normalize(x, dim=-1) (divides by max(norm, eps))",
    ),
    Cause(
        "overflow",
        "inf, then NaN (inf - inf, 0 * inf), after values grow",
        "exp, pow or a product exceeded the largest float (exp(x) for x > 88.7 in float32)",
        "use the stable form (logsumexp, softplus, log_softmax, log1p(exp)), clamp the argument, lower the lr",
    ),
    Cause(
        "negative_domain",
        "NaN right after a sqrt, log or fractional power",
        "an argument outside the function's domain: sqrt, log or x ** p (p not an integer) of a negative number, "
        "acos/asin beyond [-1, 1]: NaN",
        "make the argument valid where it is made (softplus, abs, clamp_min(0), clamp(-1, 1)); look for a sign slip",
    ),
    Cause(
        "all_masked",
        "NaN in an attention or masked softmax, for some rows only",
        "softmax / logsumexp over a row where every entry is -inf (everything masked): exp(-inf - -inf) = NaN",
        "keep at least one unmasked entry per row, or mask with a large finite negative (-1e9) and zero the "
        "fully masked rows afterwards",
    ),
    Cause(
        "half_precision_overflow",
        "inf / NaN under autocast or in float16, fine in float32",
        "float16 overflows above 65504 (bfloat16 loses precision); autocast runs matmuls in low precision",
        "scale the inputs down, keep the overflowing op in float32 (torch.autocast(..., enabled=False) around it), "
        "or use bfloat16; use a GradScaler for float16 gradients",
    ),
    Cause(
        "gradient_overflow",
        "finite loss, inf or NaN gradient",
        "the backward pass overflowed (a huge activation or a steep function)",
        "lower the learning rate; clip gradients (clip_grad_norm_); normalise the inputs",
    ),
    Cause(
        "loss_overflow",
        "the loss is inf",
        "the loss overflowed",
        "lower the learning rate; check the targets' scale",
    ),
    Cause(
        "weight_overflow",
        "finite gradients, NaN/inf weights after optimizer.step()",
        "the update lr * gradient made a weight overflow",
        "lower the learning rate; clip gradients",
    ),
    Cause(
        "optimizer_nan_update",
        "NaN weights after optimizer.step() although loss and gradients are finite -- even at learning rate 0",
        "the optimizer's own update is 0/0 (Adam with eps=0 and a gradient of exactly 0: m / sqrt(v) = 0/0); "
        "learning rate 0 does not help: 0 * NaN = NaN",
        "keep Adam's eps > 0 (default 1e-8); to freeze a parameter, set requires_grad=False, not lr=0",
    ),
    Cause(
        "optimizer_state_overflow",
        "weights stop moving; the optimizer state holds inf",
        "Adam's second moment grad ** 2 overflowed (|grad| > 1.8e19 in float32): every later update is 0 or NaN",
        "clip gradients before the step (clip_grad_norm_); find why the gradient is that large",
    ),
    Cause(
        "bn_running_stats",
        "training fine, evaluation (model.eval()) NaN",
        "BatchNorm running statistics are updated by every forward pass in train mode, even at lr 0; one batch with "
        "a non-finite or huge value poisons them for good",
        "fix the bad batch; module.reset_running_stats() after it; evaluate in eval mode to see it",
    ),
    Cause(
        "invalid_distribution_argument",
        "ValueError: Expected parameter ... to satisfy the constraint ...",
        "a torch.distributions argument broke its constraint (validate_args)",
        "make the argument valid where it is computed (softplus for scales, softmax/logits for probabilities)",
    ),
    Cause(
        "other",
        "a non-finite value the doctor could not classify",
        "see the op and its inputs in the report",
        "inspect the op's inputs in the report; send the planted case to the gradlab issues",
    ),
]

CAUSES: dict[str, Cause] = {c.name: c for c in _TABLE}
"""Every cause class by name: ``CAUSES[name].symptom``, ``.why``, ``.fix``."""


def nan_causes() -> dict[str, Cause]:
    """The cause classes of the NaN doctor, by name: each a :class:`Cause` with ``symptom``, ``why`` and ``fix``.

    The same table names the causes in :class:`gradlab.NonFiniteReport` and in the mdn study's results.
    """
    return dict(CAUSES)


LOG_OPS = {"log", "log2", "log10", "log_", "xlogy", "lgamma", "digamma", "log_prob"}
DOMAIN_OPS = {"sqrt", "rsqrt", "pow", "log1p", "acos", "asin", "acosh", "atanh", "float_power"}
DIV_OPS = {"div", "true_divide", "reciprocal", "floor_divide", "remainder", "fmod", "addcdiv"}
SOFTMAX_OPS = {"softmax", "log_softmax", "logsumexp", "softmin", "_softmax", "_log_softmax", "cross_entropy"}
MASK_OPS = {"where", "getitem", "masked_select", "masked_fill", "index_select", "gather", "nan_to_num", "take"}
STD_OPS = {"std", "var", "std_mean", "var_mean"}
NORM_OPS = {"norm", "linalg_vector_norm", "vector_norm", "linalg_norm", "frobenius_norm", "nuclear_norm", "cdist"}
SCALE_OPS = {"relu", "exp", "relu_", "abs", "clamp", "clamp_min", "threshold", "hardtanh", "square"}
PROB_OPS = {"softmax", "_softmax", "sigmoid", "softmin"}
SUM_OPS = {"sum", "mean", "nansum"}
ZERO_GRAD_OPS = {"sqrt", "pow", "norm", "linalg_vector_norm", "vector_norm", "linalg_norm", "cdist", "rsqrt", "abs"}
HALF = {"float16", "bfloat16"}
ATTENTION_OPS = {"multi_head_attention_forward", "scaled_dot_product_attention"}


@dataclass
class Evidence:
    """What the doctor knows about the first non-finite value (all a :func:`classify` needs).

    ``phase``: input batch, weights, forward, loss, backward, optimizer step, optimizer state, buffers, exception.
    ``op``: the operation's short name (``log``, ``div``, ``softmax``...); ``inputs``: its tensor inputs' facts
    (the forward op's inputs for a backward-pass origin); ``producers``: the op that made each input (``None``
    for a tensor from outside the traced step); ``masked_by``: a later op that dropped the non-finite value from
    the forward pass (``where``, ``getitem``...); ``output``: the facts of the non-finite result.
    """

    phase: str
    op: str
    inputs: list[TensorFacts] = field(default_factory=list)
    producers: list[str | None] = field(default_factory=list)
    output: TensorFacts | None = None
    masked_by: str | None = None
    scalars: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def _producer_chain(ev: Evidence, index: int) -> str | None:
    return ev.producers[index] if index < len(ev.producers) else None


def classify(ev: Evidence) -> str:
    """The cause name (a key of :data:`CAUSES`) for the evidence about a first non-finite value."""
    op, phase = ev.op, ev.phase
    ins = ev.inputs
    out = ev.output
    if phase == "input batch":
        return "nonfinite_input"
    if phase == "weights":
        return "nonfinite_weights"
    if phase == "buffers":
        return "bn_running_stats"
    if phase == "optimizer state":
        return "optimizer_state_overflow"
    if phase == "optimizer step":
        if ev.extra.get("zero_division") or (ev.extra.get("eps") == 0 and ev.extra.get("zero_grads")):
            return "optimizer_nan_update"
        if out is not None and out.nan and ins and all(f.finite for f in ins) and any(f.zeros for f in ins[1:]):
            return "optimizer_nan_update"
        return "weight_overflow"
    if phase == "exception":
        return ev.extra.get("cause", "invalid_distribution_argument")
    if phase == "loss" and op == "backward":  # only the loss's value is known (no op-level trace)
        return "loss_overflow"
    first = ins[0] if ins else None
    half = (out is not None and out.dtype in HALF) or any(f.dtype in HALF for f in ins)
    if op in SOFTMAX_OPS and any(f.rows_all_neginf for f in ins):
        return "all_masked"
    if op in STD_OPS and out is not None and out.nan and first is not None and first.finite:
        return "zero_std"
    if op in LOG_OPS and first is not None:
        producer = _producer_chain(ev, 0)
        if first.zeros and producer in PROB_OPS:
            return "log_of_underflowed_weight"
        if ev.masked_by in MASK_OPS and phase != "backward":
            return "masked_nonfinite_gradient"
        if first.negatives:
            return "negative_domain"
        if first.zeros:
            if producer in SCALE_OPS:
                return "zero_scale"
            if producer in SUM_OPS:
                return "probability_underflow"
            return "nan_gradient_at_zero" if phase == "backward" else "log_of_zero"
    if op in DIV_OPS and phase != "backward":
        if ev.masked_by in MASK_OPS:
            return "masked_nonfinite_gradient"
        if ev.extra.get("denominator_zero"):
            return "division_by_zero"
    if op in DIV_OPS and ins:
        den = ins[-1]
        producer = _producer_chain(ev, len(ins) - 1)
        if den.zeros:
            if producer in STD_OPS:
                return "zero_std"
            if producer in NORM_OPS:
                return "zero_norm"
            if producer in SCALE_OPS or producer in {"softplus", "sqrt"}:
                return "zero_scale"
            return "division_by_zero"
    if op in DOMAIN_OPS and first is not None:
        if ev.masked_by in MASK_OPS and phase != "backward":
            return "masked_nonfinite_gradient"
        exponent = ev.scalars[0] if ev.scalars else None
        if first.zeros and out is not None and (out.posinf or out.neginf) and not out.nan:
            if op == "rsqrt" or (op in {"pow", "float_power"} and exponent is not None and exponent < 0):
                return "division_by_zero"  # 0 ** -p and 1 / sqrt(0)
        if phase != "backward" and out is not None and out.nan and all(f.finite for f in ins):
            return "negative_domain"  # sqrt/log/x ** 0.5 of a negative, acos/asin beyond +-1
    if op in ATTENTION_OPS and phase != "backward" and out is not None and out.nan:
        return "all_masked"
    if phase == "backward":
        if op in NORM_OPS and first is not None and (first.zeros or ev.extra.get("zero_norm")):
            return "zero_norm"
        if op in ZERO_GRAD_OPS and first is not None and first.zeros:
            return "nan_gradient_at_zero"
        if op in DIV_OPS and len(ins) >= 2 and ins[1].zeros:
            return "division_by_zero"
        if half:
            return "half_precision_overflow"
        if out is not None and (out.posinf or out.neginf) and not out.nan:
            return "gradient_overflow"
        if op in LOG_OPS and first is not None and first.zeros:
            return "nan_gradient_at_zero"
        return "gradient_overflow" if out is not None and out.nan and ins and all(f.finite for f in ins) else "other"
    if out is not None and (out.posinf or out.neginf):
        if half:
            return "half_precision_overflow"
        return "overflow"
    if out is not None and out.nan and half:
        return "half_precision_overflow"
    if op in {"mul", "sub", "add", "matmul", "linear", "sum"} and any(not f.finite for f in ins):
        return "overflow"
    return "other"
