"""A training job for the multi-process tests, run as a script under torchrun or a test's launcher.

    python tests/_dist_job.py SPEC.json

SPEC holds: "data" (a .npy file or folder, opened memory-mapped), "out" (a folder), "params"
(Autoencoder settings), and optionally "resume" (bool), "record_batches" (bool), and
"die" = {"rank": r, "step": s, "signal": "SIGKILL" | "SIGSTOP"}: that rank sends itself the
signal before its s-th training step (counted from 1), as a crash or a hang would; "stop_step":
a callback asks to stop after that global step.

Every rank writes ``flat{rank}.npy`` (its parameters, flattened) and, with record_batches,
``batches{rank}.npy`` (the example indices of each training batch it gathered); the estimator
saves its model to ``out/model{rank}``, which only rank 0 may do.
"""

import json
import os
import signal
import sys

import numpy as np
import torch

torch.set_num_threads(1)

from latentlab import Autoencoder  # noqa: E402
from latentlab.training import data as data_mod  # noqa: E402
from latentlab.training.data import open_npy  # noqa: E402


def main(spec_path: str) -> int:
    spec = json.loads(open(spec_path).read())
    out = spec["out"]
    rank = int(os.environ.get("RANK", "0"))
    X = open_npy(spec["data"])
    batches = []
    die = spec.get("die")
    steps = [0]
    real_gather = data_mod.ArrayData.gather
    n_train = spec.get("n_train")

    def gather(self, idx):
        if self.n == n_train and len(idx) == spec["params"]["batch_size"]:  # a training batch
            steps[0] += 1
            if die and die["rank"] == rank and steps[0] == die["step"]:
                print(f"rank {rank} sends itself {die['signal']}", flush=True)
                os.kill(os.getpid(), getattr(signal, die["signal"]))
            if spec.get("record_batches"):
                batches.append(self.index.index_select(0, idx).numpy() if self.index is not None else idx.numpy())
        return real_gather(self, idx)

    data_mod.ArrayData.gather = gather
    # "{rank}" in a setting becomes this process's rank: a probe for which ranks write files.
    params = {k: v.format(rank=rank) if isinstance(v, str) else v for k, v in spec["params"].items()}
    callbacks = []
    if spec.get("stop_step"):  # rank 0's callback asks to stop at this global step (the others have none)
        from latentlab.training.callbacks import Callback

        class Stop(Callback):
            def on_step_end(self, step, loss):
                return step >= spec["stop_step"]

        callbacks.append(Stop())
    est = Autoencoder(**params).fit(X, resume=spec.get("resume", False), callbacks=callbacks)
    est.save(os.path.join(out, f"model{rank}"))
    flat = torch.cat([p.detach().reshape(-1) for p in est.module_.parameters()]).numpy()
    np.save(os.path.join(out, f"flat{rank}.npy"), flat)
    if batches:
        np.save(os.path.join(out, f"batches{rank}.npy"), np.stack(batches))
    with open(os.path.join(out, f"history{rank}.json"), "w") as f:
        json.dump(est.history_, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
