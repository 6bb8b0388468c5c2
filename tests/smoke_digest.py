"""The fingerprint of a 2-epoch smoke run, kept equal to the code before issue 10 (4a2fb26).

Uses only APIs that existed at 4a2fb26, so the reference values in
tests/training/test_scale.py can be regenerated from that commit:

    git worktree add /tmp/base 4a2fb26 && cp tests/smoke_digest.py /tmp/base/tests/
    cd /tmp/base && OMP_NUM_THREADS=1 PYTHONPATH=. python tests/smoke_digest.py
"""

from __future__ import annotations

import hashlib
import tempfile

from cl_analysis.study.profiles import profile_config
from cl_analysis.training.checkpoint import load_checkpoint
from cl_analysis.training.data import synthetic_dataset
from cl_analysis.training.pretrain import pretrain


def smoke_digest(regime: str, loss: str, out: str) -> tuple[str, list[float]]:
    """sha256 of the model + bank tensors after the smoke profile's 2 epochs, and the losses.

    20 synthetic images per class (size 16), device cpu, num_threads 1, written into ``out``.
    """
    cfg = profile_config("smoke", regime=regime, loss=loss, device="cpu", num_threads=1, epochs=2)
    train, test = synthetic_dataset(20, size=16), synthetic_dataset(5, size=16, split="test")
    res = pretrain(cfg, out, train_set=train, test_set=test, progress=False)
    state = load_checkpoint(f"{out}/checkpoint.pt")
    h = hashlib.sha256()
    for key in sorted(state["model"]):
        h.update(state["model"][key].contiguous().numpy().tobytes())
    if state["bank"] is not None:
        h.update(state["bank"]["bank"].numpy().tobytes())
    return h.hexdigest(), [r["loss"] for r in res["history"]]


if __name__ == "__main__":
    for regime in ("memory_bank", "simclr"):
        for loss in ("info_nce", "hard"):
            with tempfile.TemporaryDirectory() as d:
                print(regime, loss, *smoke_digest(regime, loss, d))
