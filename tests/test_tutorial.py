"""The tutorial (examples/tutorial.py) runs top to bottom, with shrunk budgets: it cannot rot."""

import os
import runpy
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "examples" / "tutorial.py"


def test_the_tutorial_runs_top_to_bottom(monkeypatch, capsys):
    monkeypatch.setenv("LATENTLAB_TUTORIAL_QUICK", "1")
    runpy.run_path(str(TUTORIAL), run_name="__main__")
    out = capsys.readouterr().out
    for step in ("PCA: MSE", "largest principal angle", "deep AE: MSE", "VAE: test ELBO", "GMM on its codes",
                 "vae c=0.3: rate", "saved and loaded"):
        assert step in out, step
    assert os.environ["LATENTLAB_TUTORIAL_QUICK"] == "1"
