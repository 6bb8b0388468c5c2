"""Measure the quick profile's seed-to-seed noise floor and commit it for one-seed claims.

Usage (after `cl-analysis reproduce --profile quick --seeds 0 1 2 --runs runs/quick-seeds ...`,
which trains the sweep and its density study):

    python scripts/noise_floor.py runs/quick-seeds [cl_analysis/study/noise_floor.json]

Writes the JSON read by ``cl_analysis.study.claims.NoiseFloor.load`` and prints a Markdown table
(pooled std, smallest and largest per-configuration std) for docs/quick_profile.md.
"""

import datetime
import json
import sys
from pathlib import Path

from cl_analysis.study.noise import measure_noise_floor


def main(runs: str, out: str = "cl_analysis/study/noise_floor.json") -> None:
    floor = measure_noise_floor(runs)
    record = {
        "description": "Seed-to-seed standard deviation (ddof = 1) of ONE run's metric on the "
                       "quick profile, pooled over the sweep's (loss, τ) configurations: "
                       "sqrt(mean per-configuration variance). Used by "
                       "cl_analysis.study.claims to judge a claim when only one seed was "
                       "trained. Accuracies are fractions in [0, 1].",
        "provenance": {"profile": floor["profile"], "seeds": floor["seeds"],
                       "date": datetime.date.today().isoformat(),
                       "machine": "the project's 2-core CPU (1 thread per run, 2 runs at once)",
                       "data": "CIFAR-10 (JPEG export)",
                       "commands": [f"cl-analysis reproduce --profile quick --seeds "
                                    f"{' '.join(map(str, floor['seeds']))} --runs {runs} "
                                    f"--data-root DATA --out reports-seeds",
                                    f"python scripts/noise_floor.py {runs}"]},
        "std": floor["std"],
        "detail": floor["detail"],
    }
    Path(out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print("| metric | pooled std | smallest | largest | configurations |\n|---|---|---|---|---|")
    for metric, d in floor["detail"].items():
        print(f"| {metric} | {d['std']:.4f} | {d['min']:.4f} | {d['max']:.4f} | "
              f"{d['configurations']} |")
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
