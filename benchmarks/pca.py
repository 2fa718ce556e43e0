"""PCA fit time on the 50,000 x 784 static-MNIST training split: latentlab vs scikit-learn.

Both fit the same float32 array with the same number of components, interleaved over several
rounds in this one process; the script checks they find the same components (largest principal
angle between the two subspaces, and each axis's |cosine|) and explained variances, and prints
the time ratio (goal: latentlab <= 1.0x scikit-learn's time).

    python benchmarks/pca.py                  # k = 20 and 50, 5 rounds
    python benchmarks/pca.py --k 10 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import require_mnist, machine_line, write_section  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--k", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    import sklearn
    from sklearn.decomposition import PCA as SkPCA

    from latentlab import PCA

    path = require_mnist(args.data)
    X = np.ascontiguousarray(np.load(path)["train"], dtype=np.float32)
    print(f"X {X.shape} {X.dtype}; scikit-learn {sklearn.__version__}; {machine_line()}")
    rows = []
    for k in args.k:
        times = {"latentlab": [], "scikit-learn": []}
        fits = {}
        contenders = {"latentlab": lambda: PCA(latent_dim=k).fit(X), "scikit-learn": lambda: SkPCA(n_components=k).fit(X)}
        for name, fn in contenders.items():  # warm-up (imports, first-touch of memory)
            fn()
        for _ in range(args.rounds):
            for name, fn in contenders.items():
                t = time.perf_counter()
                fits[name] = fn()
                times[name].append(time.perf_counter() - t)
        ours, ref = fits["latentlab"], fits["scikit-learn"]
        angle = np.degrees(scipy.linalg.subspace_angles(ours.components_.T.astype(np.float64), ref.components_.T.astype(np.float64)).max())
        cos = np.abs(np.sum(ours.components_ * ref.components_, axis=1) / (np.linalg.norm(ours.components_, axis=1) * np.linalg.norm(ref.components_, axis=1)))
        ev = np.max(np.abs(ours.explained_variance_ / ref.explained_variance_ - 1))
        med = {n: statistics.median(v) for n, v in times.items()}
        ratio = med["latentlab"] / med["scikit-learn"]
        solver = getattr(ref, "_fit_svd_solver", "?")
        print(f"k={k:3d}: latentlab {med['latentlab']:.3f} s, scikit-learn {med['scikit-learn']:.3f} s (solver {solver}) "
              f"-> {ratio:.2f}x; largest principal angle {angle:.2e} deg, min |cos| per axis {cos.min():.6f}, "
              f"max explained-variance rel. diff {ev:.1e}")
        rows.append((k, med["latentlab"], med["scikit-learn"], solver, ratio, angle, cos.min(), ev))

    if not args.no_write:
        lines = [
            "`python benchmarks/pca.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip() + "`",
            "",
            f"Machine: {machine_line()}; scikit-learn {sklearn.__version__}. Fit of the 50,000 x 784 float32 training "
            f"split, median of {args.rounds} interleaved rounds after a warm-up.",
            "",
            "| k | latentlab (s) | scikit-learn (s) | sklearn solver | time ratio | largest principal angle (deg) | min axis cos | max EV rel. diff |",
            "|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for k, a, b, solver, r, ang, c, ev in rows:
            lines.append(f"| {k} | {a:.3f} | {b:.3f} | {solver} | {r:.2f}x | {ang:.1e} | {c:.6f} | {ev:.1e} |")
        write_section("PCA fit, 50,000 x 784", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
