"""The static-MNIST benchmark runs end to end on a tiny stand-in file and records only its section."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _run(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("LATENTLAB_DATA", None)
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "static_mnist.py"), *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_static_mnist_benchmark_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    arrays = {k: (rng.uniform(size=(n, 784)) < 0.2).astype(np.uint8) for k, n in (("train", 120), ("valid", 40), ("test", 30))}
    np.savez(data, **{k: np.asfortranarray(v) for k, v in arrays.items()})  # stored like the real file
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n## Someone else's benchmark\n\nkeep me\n")
    args = ["--data", str(data), "--hidden", "16", "--latent-dim", "2", "--epochs", "2", "--k", "8",
            "--out", str(tmp_path / "run"), "--benchmarks-file", str(md), "--results-file", str(tmp_path / "r.json")]
    for _ in range(2):
        p = _run(args, tmp_path)
        assert p.returncode == 0, p.stderr
    text = md.read_text()
    assert "## Someone else's benchmark\n\nkeep me" in text
    assert text.count("## Static binarized MNIST") == 1
    runs = json.loads((tmp_path / "r.json").read_text())
    assert len(runs) == 2 and all(r["test_images"] == 30 and r["k"] == 8 for r in runs)
    assert np.isfinite(runs[0]["test_nll"]) and runs[0]["test_nll"] > 0
    assert text.count("| full |") == 2  # both runs in the table
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_static_mnist_benchmark_without_data_says_how_to_give_it(tmp_path):
    p = _run(["--data", str(tmp_path / "missing.npz"), "--no-record"], tmp_path)
    assert p.returncode == 2
    assert "binarized_mnist.npz not found" in p.stderr and "--data" in p.stderr


def test_mixed_table_benchmark_records_only_its_section(tmp_path):
    """benchmarks/mixed_table.py on the real penguins, two epochs and few samples: it runs, writes
    its section of a BENCHMARKS.md and its results, and leaves the other sections alone."""
    import pytest

    pytest.importorskip("palmerpenguins", reason="palmerpenguins is not installed: the mixed-table benchmark needs it")
    pytest.importorskip("pandas", reason="pandas is not installed: the mixed-table benchmark needs it")
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n## Someone else's benchmark\n\nkeep me\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    args = ["--seeds", "0", "--epochs", "2", "--n-samples", "200", "--k", "5", "--benchmarks-file", str(md),
            "--results-file", str(tmp_path / "r.json")]
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "mixed_table.py"), *args], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "11 with a missing value dropped, 333 used" in p.stdout
    text = md.read_text()
    assert "## Someone else's benchmark\n\nkeep me" in text and text.count("## Mixed-type table: Palmer penguins") == 1
    run = json.loads((tmp_path / "r.json").read_text())["runs"][0]
    assert run["likelihood"] == "mixed" and run["n_train"] == 250 and run["n_test"] == 83
    assert 0 <= run["vae"]["tv_species"] <= 1 and run["independent"]["corr_max"] > 0.5  # independent columns lose the correlations


def test_subnormal_benchmark_runs_and_counts_on_a_tiny_file(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, **{k: (rng.uniform(size=(n, 784)) < 0.2).astype(np.uint8) for k, n in (("train", 120), ("valid", 10), ("test", 10))})
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "subnormal.py"), "--data", str(data), "--images", "120",
                        "--burn-in", "1", "--pairs", "1", "--no-write"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    rows = [line for line in p.stdout.splitlines() if line.startswith(("| torch |", "| latentlab |"))]
    assert len(rows) == 2 and rows[1].endswith("| 0.0% |")  # latentlab's backward: no subnormal entries


def test_hugepages_benchmark_runs_both_settings_on_a_tiny_file(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, **{k: (rng.uniform(size=(n, 784)) < 0.2).astype(np.uint8) for k, n in (("train", 300), ("valid", 10), ("test", 10))})
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "hugepages.py"), "--data", str(data), "--quick",
                        "--model", "vae"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    runs = [line for line in p.stdout.splitlines() if line.startswith("round 1")]
    assert len(runs) == 2 and any("4 KiB pages" in r for r in runs) and any("huge pages" in r for r in runs)
    row = next(line for line in p.stdout.splitlines() if line.startswith("| VAE 784-512-256-40"))
    assert row.split("|")[2].strip() == "300"  # the images it had, not the 1,000 asked for
