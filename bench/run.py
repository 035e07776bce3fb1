"""`make bench`: run every bench/bench_*.py (or those named on the command line), write bench/results.json."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(names: list[str]) -> int:
    files = sorted(HERE.glob("bench_*.py"))
    if names:
        files = [f for f in files if f.stem.removeprefix("bench_") in names]
    out_path = HERE / "results.json"
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    for f in files:
        spec = importlib.util.spec_from_file_location(f.stem, f)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"== {f.stem}", flush=True)
        results[f.stem] = module.run()
        for key, value in results[f.stem].items():
            if isinstance(value, dict) and "ratio" in value:
                target = value.get("target", "")
                print(f"  {key}: ratio {value['ratio']:.3f} {target}", flush=True)
        out_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"results in {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
