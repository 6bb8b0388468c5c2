"""Command line: ``cl-analysis pretrain|evaluate|sweep|reproduce|profiles``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .study.profiles import PROFILES, get_profile, profile_config, profile_sweep

EPILOG = """examples:
  cl-analysis pretrain --profile quick --data-root ../shared/data/cifar10 --loss info_nce \\
      --temperature 0.2 --out runs/quick-t0.2
  cl-analysis evaluate --out runs/quick-t0.2
  cl-analysis sweep --profile quick --data-root ../shared/data/cifar10 --out runs/quick
  cl-analysis reproduce --profile quick --data-root ../shared/data/cifar10 --out reports
"""


def _common(p: argparse.ArgumentParser, *, out_help: str) -> None:
    p.add_argument("--profile", default="quick", choices=sorted(PROFILES),
                   help="settings bundle: paper (exact setup, GPU), quick (CPU minutes), "
                        "smoke (seconds; plumbing only). Default: quick")
    p.add_argument("--dataset", default="cifar10",
                   help="cifar10 | cifar100 | svhn | imagefolder (default: cifar10)")
    p.add_argument("--data-root", default=os.environ.get("CL_DATA_ROOT"),
                   help="dataset root: a torchvision dataset folder or a class-folder image tree "
                        "(root/train/<class>/*.jpg). Default: $CL_DATA_ROOT")
    p.add_argument("--regime", default="memory_bank", choices=("memory_bank", "simclr"),
                   help="memory_bank: the paper's InstDisc bank; simclr: two views, in-batch "
                        "negatives (default: memory_bank)")
    p.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    p.add_argument("--device", default=None,
                   help="auto | cpu | cuda | cuda:N (default: auto, cuda when available)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of weights, bank, data order and augmentation (default: 0)")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _workers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None,
                   help="runs trained at once, one process each (default: the profile's; the "
                        "quick profile uses 2, for a 2-core CPU)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``--help`` explains every option)."""
    parser = argparse.ArgumentParser(
        prog="cl-analysis", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reproduce Wang & Liu (CVPR 2021), 'Understanding the Behaviour of "
                    "Contrastive Loss', and SimCLR's in-batch setup.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train one model (resumable)")
    _common(p, out_help="run directory: config.json, checkpoint.pt, metrics.jsonl, eval.json")
    p.add_argument("--loss", default="info_nce",
                   help="info_nce (Eq. 1) | hard (Eq. 9) | simple (Eq. 3) | hard_simple | "
                        "tau_zero_limit (Eq. 6) | nt_xent (simclr regime). "
                        "Default: info_nce")
    p.add_argument("--temperature", type=float, default=0.07,
                   help="temperature τ > 0 (default: 0.07)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run directory's last checkpoint")
    p.add_argument("--evaluate", action="store_true",
                   help="evaluate after training (linear probe, kNN, metrics) into eval.json")

    p = sub.add_parser("evaluate", help="evaluate a run directory into eval.json")
    p.add_argument("--out", required=True, help="run directory written by `pretrain`")
    p.add_argument("--probe-epochs", type=int, default=None,
                   help="linear-probe epochs (default: the paper's 100)")
    p.add_argument("--no-linear", action="store_true", help="skip the linear probe")
    p.add_argument("--device", default=None, help="auto | cpu | cuda (default: the run's)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    p = sub.add_parser("sweep", help="train + evaluate a profile's loss x τ grid (resumable)")
    _common(p, out_help="sweep folder: one run directory per run plus results.csv/json")
    p.add_argument("--losses", nargs="+", default=None,
                   help="override the profile's losses (quick: info_nce hard simple hard_simple)")
    p.add_argument("--temperatures", nargs="+", type=float, default=None,
                   help="override the profile's τ grid (quick: 0.07 0.3 1.0)")
    _workers(p)

    p = sub.add_parser("reproduce", help="the main job: sweep, then every notebook -> reports/")
    _common(p, out_help="report folder: executed notebooks (.ipynb, .html) and summary.md/html")
    p.add_argument("--runs", default=None,
                   help="sweep folder (default: runs/<profile>), reused when it exists")
    p.add_argument("--notebooks", default=None, help="folder of the NN_*.ipynb notebooks")
    p.add_argument("--temperatures", nargs="+", type=float, default=None,
                   help="override the profile's τ grid (sweep and notebooks)")
    _workers(p)

    sub.add_parser("profiles", help="list the profiles and their settings")
    return parser


def _n_workers(args) -> int:
    return args.workers if args.workers is not None else get_profile(args.profile)["workers"]


def _overrides(args) -> dict:
    out = {"dataset": args.dataset, "regime": args.regime}
    for key in ("data_root", "epochs", "device", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cl-analysis`` command."""
    args = build_parser().parse_args(argv)
    if getattr(args, "data_root", None):
        args.data_root = str(Path(args.data_root).expanduser().resolve())
    try:
        return _dispatch(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"cl-analysis {args.command}: error: {err}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    progress = not getattr(args, "no_progress", False)
    if args.command == "profiles":
        for name, prof in PROFILES.items():
            print(f"{name}: {prof['description']}")
            print(f"  train: {prof['train']}\n  sweep: {prof['sweep']}\n  eval: {prof['eval']}")
        return 0
    if args.command == "pretrain":
        from .evaluation.evaluate import evaluate_run
        from .training.pretrain import pretrain

        config = profile_config(args.profile, **_overrides(args), loss=args.loss,
                                temperature=args.temperature)
        result = pretrain(config, args.out, resume=args.resume, progress=progress)
        last = result["history"][-1] if result["history"] else {}
        print(json.dumps({"out_dir": result["out_dir"], "last_epoch": last}, default=str))
        if args.evaluate:
            probe = get_profile(args.profile)["eval"]["probe_epochs"]
            print(json.dumps(evaluate_run(args.out, probe_epochs=probe, progress=progress),
                             default=str, indent=1))
        return 0
    if args.command == "evaluate":
        from .evaluation.evaluate import evaluate_run

        result = evaluate_run(args.out, linear=not args.no_linear, probe_epochs=args.probe_epochs,
                              device=args.device, progress=progress)
        print(json.dumps(result, default=str, indent=1))
        return 0
    spec = profile_sweep(args.profile, data_root=args.data_root, datasets=(args.dataset,),
                         regimes=(args.regime,), losses=getattr(args, "losses", None),
                         temperatures=getattr(args, "temperatures", None), seed=args.seed,
                         device=args.device, epochs=args.epochs)
    if args.command == "sweep":
        from .study.sweep import run_sweep

        df = run_sweep(spec, args.out, progress=progress, workers=_n_workers(args))
        print(df.to_string(index=False))
        print(f"results: {Path(args.out) / 'results.csv'}")
        return 0
    # reproduce
    from .study.sweep import run_sweep
    from .reproduce import execute_notebooks, write_summary

    if not args.data_root:
        raise ValueError("reproduce needs the dataset: pass --data-root (e.g. a CIFAR-10 "
                         "image-folder export) or set CL_DATA_ROOT")
    runs = Path(args.runs or Path("runs") / args.profile).resolve()
    run_sweep(spec, runs, progress=progress, workers=_n_workers(args))
    params = {"PROFILE": args.profile, "DATA_ROOT": args.data_root,
              "RUNS_DIR": str(runs), "DATASET": args.dataset, "FAST": args.profile == "smoke",
              "TEMPERATURES": args.temperatures}
    notebooks = execute_notebooks(args.out, params, notebook_dir=args.notebooks,
                                  progress=progress)
    md, html = write_summary(runs, args.out, args.profile, args.dataset)
    print(f"executed notebooks: {', '.join(str(p) for p in notebooks)}")
    print(f"summary: {md} and {html}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
