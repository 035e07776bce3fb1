"""``gradlab replicate STAGE``: the stage again on an independent block of seeds; do its verdicts hold?

The stage reruns with the same parameters but its ``seed`` moved by ``offset`` (default 1000: every
study draws its seeds as ``seed, seed + 1, ...`` and uses fewer than 1000, so the two blocks share
none; the data a study draws from its seed is new too). Its outputs go to
``results/replications/<stage>/``; the comparison with ``results/<stage>/`` goes to
``results/<stage>/replication.json``:

* every **verdict** of the headline (a leaf under a ``flags`` group, or any boolean): the original
  value, the replication's, and whether they agree (a +1 that comes back 0 is *not replicated*);
* every other **headline number**: both values, each one's interval where the stage reports one
  (``<key>_ci_low``/``_ci_high``, or ``<name>_ci_low``/``_ci_high`` beside ``<name>_mean``), and
  whether each value lies inside the other's interval.

The file names the SHA-256 of the ``stats.json`` it compared, so a later rerun of the stage shows
as a replication of older results. The report prints the verdict table per stage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gradlab.config import ConfigError, flatten
from gradlab.report.replication import FILE, sha256

OFFSET = 1000


def is_verdict(key: str, value: Any) -> bool:
    """A headline leaf that states a verdict: booleans, and the values under a ``flags`` group."""
    return isinstance(value, bool) or ("flags" in key.split(".")[:-1] and isinstance(value, int | float))


def interval(flat: dict[str, Any], key: str) -> tuple[float, float] | None:
    """The interval the stage reports for ``key`` (None when it reports none, or it is undefined)."""
    stems = [key]
    if key.endswith("_mean"):
        stems.append(key[: -len("_mean")])
    for stem in stems:
        low, high = flat.get(f"{stem}_ci_low"), flat.get(f"{stem}_ci_high")
        if isinstance(low, int | float) and isinstance(high, int | float):
            return float(low), float(high)
    return None


def _inside(value: Any, bounds: tuple[float, float] | None) -> bool | None:
    if bounds is None or not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return bool(bounds[0] <= value <= bounds[1])


def compare(original: dict, replication: dict, headline_keys: list[str]) -> dict:
    """The verdicts and headline numbers of two stats.json dicts, side by side (see the module doc)."""
    a, b = flatten(original), flatten(replication)
    verdicts, numbers = {}, {}
    for key in headline_keys:
        if key.endswith(("_ci_low", "_ci_high")):
            continue
        va, vb = a.get(key), b.get(key)
        if is_verdict(key, va):
            verdicts[key] = {"original": va, "replication": vb, "agree": va == vb}
            continue
        ia, ib = interval(a, key), interval(b, key)
        numbers[key] = {
            "original": va,
            "replication": vb,
            "original_interval": list(ia) if ia else None,
            "replication_interval": list(ib) if ib else None,
            "replication_in_original_interval": _inside(vb, ia),
            "original_in_replication_interval": _inside(va, ib),
        }
    agree = sum(v["agree"] for v in verdicts.values())
    return {
        "verdicts": verdicts,
        "verdicts_total": len(verdicts),
        "verdicts_agree": agree,
        "verdicts_not_replicated": sorted(k for k, v in verdicts.items() if not v["agree"]),
        "numbers": numbers,
    }


def run_replicate(stage: str, params_file: str | Path = "params.yaml", offset: int = OFFSET, settings=None) -> int:
    """Run ``stage`` on the seed block ``seed + offset`` and write ``results/<stage>/replication.json``."""
    from gradlab.context import write_json
    from gradlab.headline import headline
    from gradlab.process import ExitCode, refuse
    from gradlab.runner import resolve_params, run_stage
    from gradlab.settings import Settings
    from gradlab.stages import get_stage
    from gradlab.tracking import stage_run_name

    try:
        settings = settings or Settings.from_env()
        if offset < 1:
            raise ConfigError("--offset", f"must be a positive number of seeds (got {offset})")
        params = resolve_params(stage, [], params_file)
        folder = settings.results / stage
        if not (folder / "stats.json").exists():
            raise ConfigError(stage, f"{folder / 'stats.json'} does not exist: run `gradlab run {stage}` first")
    except ConfigError as err:
        return refuse(err, ExitCode.BAD_INPUT)
    seed = int(getattr(params, "seed", 0))
    out = settings.results / "replications" / stage
    code = run_stage(
        stage,
        [f"{stage}.seed={seed + offset}"],
        params_file,
        out_dir=out,
        run_name=f"{stage_run_name(stage)} · replication",
        tags={"gradlab.replication": "true", "gradlab.replication_of_seed": str(seed)},
        settings=settings,
    )
    if code != ExitCode.OK:
        return code
    original = json.loads((folder / "stats.json").read_text())
    again = json.loads((out / "stats.json").read_text())
    keys = list(flatten(headline(original, get_stage(stage).headline)))
    result = {
        "stage": stage,
        "offset": offset,
        "original": {"seed": seed, "stats_sha256": sha256(folder / "stats.json")},
        "replication": {"seed": seed + offset, "folder": f"replications/{stage}"},
        **compare(original, again, keys),
    }
    tmp = folder / f".{FILE}.tmp"
    write_json(tmp, result)
    tmp.replace(folder / FILE)
    print(
        f"{stage}: {result['verdicts_agree']} of {result['verdicts_total']} verdicts replicated ({folder / FILE})",
        file=sys.stderr,
    )
    return ExitCode.OK
