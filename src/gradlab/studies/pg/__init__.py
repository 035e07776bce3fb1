"""REINFORCE loss-sign ablations on CartPole and Atari Pong (stages ``pg_cartpole``, ``pg_pong``).

The tools, usable on any policy, are imported on first use (torch and numpy only; no gymnasium):
``discounted_returns``, ``standardize`` (returns.py), ``policy_loss`` (losses.py), ``probe_step``,
``probe_update``, ``logp_moves``, ``fixed_batch_descent``, ``dlogp_adv_corr`` (probe.py).
"""

from gradlab.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "discounted_returns": "gradlab.studies.pg.returns",
        "standardize": "gradlab.studies.pg.returns",
        "policy_loss": "gradlab.studies.pg.losses",
        "probe_step": "gradlab.studies.pg.probe",
        "dlogp_adv_corr": "gradlab.studies.pg.probe",
        "probe_update": "gradlab.studies.pg.probe",
        "logp_moves": "gradlab.studies.pg.probe",
        "fixed_batch_descent": "gradlab.studies.pg.probe",
    },
)
