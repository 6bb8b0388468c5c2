"""Tabulate scripts/tau_dynamics.sh's runs (issue 11 §3) as Markdown.

Usage: python scripts/tau_dynamics_table.py [runs/tau-dynamics]
Per run: linear and kNN top-1 (fractions), the mean linear and kNN accuracy of the five tail
classes (the rarest of the long-tailed profile: labels 5-9; the test set is balanced), and the τ
of the last epoch.
"""

import json
import sys
from pathlib import Path

from cl_analysis.study.runs import load_run


def main(folder: str = "runs/tau-dynamics") -> None:
    rows = []
    for d in sorted(Path(folder).iterdir()):
        if not (d / "eval.json").is_file():
            continue
        run = load_run(d)
        ev = run.evaluation
        per_class = ev.get("knn_per_class") or []
        tail = per_class[5:] if len(per_class) == 10 else []
        lin = ev.get("linear_per_class") or []
        lin_tail = lin[5:] if len(lin) == 10 else []
        data = "long-tailed (100)" if d.name.endswith("long_tail") else "balanced"
        schedule = d.name.split("-")[0]
        rows.append((schedule, data, ev.get("linear_top1"), ev.get("knn_top1"),
                     sum(lin_tail) / len(lin_tail) if lin_tail else None,
                     sum(tail) / len(tail) if tail else None,
                     run.history[-1].get("temperature") if run.history else None))
    print("| τ schedule | training data | linear top-1 | kNN top-1 | linear, 5 rarest classes "
          "| kNN, 5 rarest classes | τ at the end |\n|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r[1], r[0])):
        cells = [r[0], r[1]] + ["–" if v is None else f"{v:.3f}" for v in r[2:]]
        print("| " + " | ".join(cells) + " |")
    print(json.dumps({"runs": len(rows)}))


if __name__ == "__main__":
    main(*sys.argv[1:2])
