"""The VAE family on the command line: `latentlab fit {iwae,vamp,hvae,cvae}` and every command
that reads a run, in-process (`cli.main`) on tiny data and one epoch; the conditional VAE's
condition from the source's labels, a labels file or a CSV column; its errors."""

import json

import numpy as np
import pytest

from latentlab import api, cli, load, plots, report
from latentlab.datasets import load_digits, load_table
from latentlab.errors import DataError
from latentlab.models import MODELS

TINY = ["--epochs", "1", "--hidden", "16", "--eval-k", "10"]
EXTRA = {"iwae": ["--k", "2"], "vamp": ["--n-pseudo-inputs", "10"], "hvae": ["--latent-dim2", "3"], "cvae": []}
CODE_SIZE = {"iwae": 2, "vamp": 2, "hvae": 5, "cvae": 2}  # hvae: [z1 | z2] = 2 + 3


def run(capsys, *argv, code=0):
    """`latentlab ARGV` in this process: (stdout, stderr), after checking the exit status."""
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == code, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    return out, err


def run_json(capsys, *argv):
    return json.loads(run(capsys, *argv, "--json")[0])


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """A small CSV with six features and a text label column, and a digits subset as .npy files."""
    d = tmp_path_factory.mktemp("fam")
    rng = np.random.default_rng(0)
    species = np.array(["setosa", "versicolor", "virginica"])[np.arange(60) % 3]
    X = rng.normal(size=(60, 6)) + (np.arange(60) % 3)[:, None]
    lines = ["a,b,c,species,d,e,f"] + [",".join([*(f"{v:.4f}" for v in r[:3]), s, *(f"{v:.4f}" for v in r[3:])]) for r, s in zip(X, species)]
    (d / "t.csv").write_text("\n".join(lines) + "\n")
    digits = load_digits()
    np.save(d / "x.npy", digits.data[:300])
    np.save(d / "y.npy", digits.target[:300])
    np.save(d / "y_short.npy", digits.target[:200])
    (d / "y.csv").write_text("digit\n" + "\n".join(map(str, digits.target[:300])) + "\n")
    return d, X, species


# ------------------------------------------------------------------ each new model name, end to end
@pytest.mark.parametrize("model", ["iwae", "vamp", "hvae", "cvae"])
def test_fit_evaluate_use_and_report(tmp_path, capsys, model):
    d = tmp_path / model
    out = run_json(capsys, "fit", model, "--data", "digits", "--latent-dim", "2", *TINY, *EXTRA[model], "--out", d)
    assert out["model"] == model and out["metrics"]["n_test"] == 180 and out["metrics"]["epochs"] == 1
    assert type(load(d)).__name__ == type(MODELS[model]()).__name__

    ev = run_json(capsys, "evaluate", d, "--k", "10")["metrics"]
    assert ev["n_examples"] == 180 and np.isfinite(ev["elbo"]) and ev["log_likelihood"] >= ev["elbo"] - 1.0
    assert json.loads((d / "run.json").read_text())["evaluations"]["test"]["k"] == 10

    assert run_json(capsys, "sample", d, "-n", "10", "--out", tmp_path / "s.npy")["shape"] == [10, 64]
    assert np.load(tmp_path / "s.npy").shape == (10, 64)
    run(capsys, "encode", d, "--out", tmp_path / "z.npy")
    assert np.load(tmp_path / "z.npy").shape == (1797, CODE_SIZE[model])
    run(capsys, "reconstruct", d, "--split", "test", "--out", tmp_path / "r.npy")
    assert np.load(tmp_path / "r.npy").shape == (180, 64)
    run(capsys, "interpolate", d, "--from", "0", "--to", "5", "--steps", "4", "--out", tmp_path / "i.png")
    assert (tmp_path / "i.png").stat().st_size > 0

    page, _ = run(capsys, "report", d)
    html = (d / "index.html").read_text()
    assert page.strip() == str(d / "index.html")
    for section in ("training", "reconstructions", "samples", "interpolations", "traversals"):
        assert f'id="{section}"' in html
    assert ('id="manifold"' in html) == (CODE_SIZE[model] == 2)  # the manifold needs 2-D codes
    assert "does not apply" not in html


def test_two_layer_codes_in_figures_and_help(tmp_path, capsys):
    """A hierarchical VAE's codes are [z1 | z2]: the figures name both layers, the help says so."""
    d = tmp_path / "h"
    run(capsys, "fit", "hvae", "--latent-dim", "2", "--latent-dim2", "3", *TINY, "--out", d)
    figs = report.run_figures(api.open_run(d))
    rows = [t.get_text() for t in figs["traversals"].axes[0].get_yticklabels()]
    assert rows == ["z1[0]", "z1[1]", "z2[0]", "z2[1]", "z2[2]"]
    help_text, _ = run(capsys, "encode", "--help")
    assert "[z1 | z2]" in help_text
    for model, flags in {"hvae": ["--latent-dim2", "--prior", "--n-pseudo-inputs", "--k"], "vamp": ["--n-pseudo-inputs"],
                         "iwae": ["--k"], "cvae": ["--labels", "--label-column", "--condition"]}.items():
        text, _ = run(capsys, "fit", model, "--help")
        assert all(f in text for f in flags), model
    text, _ = run(capsys, "fit", "iwae", "--help")
    assert "--free-bits FREE_BITS\n" in text and "Must be 0" in text


# ------------------------------------------------------------------ the conditional VAE's condition
@pytest.fixture(scope="module")
def cvae_digits(tmp_path_factory):
    d = tmp_path_factory.mktemp("cvae") / "digits"
    assert cli.main(["fit", "cvae", "--data", "digits", *TINY, "--out", str(d)]) == 0
    return d


def test_cvae_digits_labels_are_the_condition(cvae_digits, capsys, tmp_path):
    d = cvae_digits
    info = json.loads((d / "run.json").read_text())
    assert info["config"]["labels"] is None and info["config"]["label_column"] is None
    assert info["data"]["condition"] == "the labels of digits"
    model = load(d)
    assert model.classes_.tolist() == list(range(10))

    out = run_json(capsys, "sample", d, "-n", "7", "--label", "3", "--out", tmp_path / "s3.npy", "--seed", "1")
    assert out["shape"] == [7, 64] and out["labels"] == {"3": 7}
    S3 = np.load(tmp_path / "s3.npy")
    # The file holds the model's own conditional samples: same seed, same z, decoded under y = 3.
    np.testing.assert_allclose(S3, model.sample(7, y=3, seed=1), atol=1e-6)
    run(capsys, "sample", d, "-n", "7", "--label", "5", "--out", tmp_path / "s5.npy", "--seed", "1")
    assert not np.allclose(S3, np.load(tmp_path / "s5.npy"))  # the label changes the samples

    # Default: an equal share of every class; a comma list shares n between the labels given.
    assert run_json(capsys, "sample", d, "-n", "23", "--out", tmp_path / "all.npy")["labels"] == {
        str(c): 3 if c < 3 else 2 for c in range(10)}
    assert run_json(capsys, "sample", d, "-n", "5", "--label", "3,8", "--out", tmp_path / "two.npy")["labels"] == {"3": 3, "8": 2}
    run(capsys, "sample", d, "-n", "20", "--out", tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_cvae_use_commands_take_each_rows_condition(cvae_digits, capsys, tmp_path):
    d = cvae_digits
    model, digits = load(d), load_digits()
    run(capsys, "encode", d, "--out", tmp_path / "z.npy")
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), model.transform(digits.data, digits.target), atol=1e-5)
    run(capsys, "reconstruct", d, "--split", "all", "--out", tmp_path / "r.npy")
    R = np.load(tmp_path / "r.npy")
    out = run_json(capsys, "reconstruct", d, "--out", tmp_path / "r_test.npy")  # default: the test split
    assert out["split"] == "test" and len(np.load(tmp_path / "r_test.npy")) == 180 < len(R)
    # Interpolation moves z and the condition together, so its ends are the rows' reconstructions.
    run(capsys, "interpolate", d, "--from", "0", "--to", "5", "--steps", "3", "--out", tmp_path / "i.npy")
    P = np.load(tmp_path / "i.npy")
    assert digits.target[0] != digits.target[5]
    np.testing.assert_allclose(P[0], R[0], atol=1e-5)
    np.testing.assert_allclose(P[-1], R[5], atol=1e-5)
    # Under a fixed --label, the path is decoded under that class throughout.
    run(capsys, "interpolate", d, "--from", "0", "--to", "5", "--steps", "3", "--label", "7", "--out", tmp_path / "j.npy")
    Z = model.transform(digits.data[[0, 5]], digits.target[[0, 5]])
    np.testing.assert_allclose(np.load(tmp_path / "j.npy")[0], model.inverse_transform(Z[:1], 7)[0], atol=1e-5)


def test_cvae_report_samples_one_row_per_class(cvae_digits, capsys):
    run(capsys, "report", cvae_digits)
    html = (cvae_digits / "index.html").read_text()
    assert "condition: the labels of digits" in html
    figs = report.run_figures(api.open_run(cvae_digits))
    rows = [t.get_text() for t in figs["samples"].axes[0].get_yticklabels()]
    assert rows == [f"y = {c}" for c in range(10)]
    m = load(cvae_digits)
    top = m.classes_[np.argmax(m.class_prior_)]  # the most frequent training class
    assert figs["traversals"].axes[0].get_title() == f"decoded under y = {top}"


def test_soft_labels_one_hot_rows_equal_labels(cvae_digits):
    """One-hot condition rows are the labels themselves (what interpolate's path starts from)."""
    model = load(cvae_digits)
    Z = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    y = np.array([0, 3, 3, 9])
    np.testing.assert_allclose(model.inverse_transform(Z, np.eye(10, dtype=np.float32)[y]), model.inverse_transform(Z, y), atol=1e-6)
    with pytest.raises(DataError, match="summing to 1"):
        model.inverse_transform(Z, np.full((4, 10), 0.5, np.float32))


def test_cvae_labels_file(tabular, capsys, tmp_path):
    d, _, _ = tabular
    for name in ("y.npy", "y.csv"):  # the CSV has a header row over numeric labels
        r = tmp_path / f"run-{name}"
        out = run_json(capsys, "fit", "cvae", "--data", d / "x.npy", "--labels", d / name, *TINY, "--out", r)
        assert out["metrics"]["n_train"] == 270
        info = json.loads((r / "run.json").read_text())
        assert info["config"]["labels"] == str(d / name) and info["data"]["condition"] == f"labels file {d / name}"
        assert load(r).classes_.tolist() == sorted(set(np.load(d / "y.npy").tolist()))
        # evaluate and encode find the labels again from run.json.
        assert run_json(capsys, "evaluate", r, "--k", "5")["metrics"]["n_examples"] == 30
        run(capsys, "encode", r, "--out", tmp_path / "z.csv")
        assert len((tmp_path / "z.csv").read_text().splitlines()) == 301
    # Another source needs its own condition: the digits bring theirs.
    run(capsys, "reconstruct", tmp_path / "run-y.npy", "--data", "digits", "--out", tmp_path / "rd.npy")
    assert np.load(tmp_path / "rd.npy").shape == (1797, 64)


def test_cvae_label_column(tabular, capsys, tmp_path):
    d, X, species = tabular
    r = tmp_path / "t"
    out = run_json(capsys, "fit", "cvae", "--data", d / "t.csv", "--label-column", "species", *TINY, "--out", r)
    assert out["metrics"]["n_train"] == 54
    info = json.loads((r / "run.json").read_text())
    assert info["data"]["feature_names"] == ["a", "b", "c", "d", "e", "f"] and info["config"]["label_column"] == "species"
    assert load(r).classes_.tolist() == ["setosa", "versicolor", "virginica"]
    run_json(capsys, "evaluate", r, "--k", "5")
    run(capsys, "sample", r, "-n", "4", "--label", "virginica", "--out", tmp_path / "s.csv")
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "a,b,c,d,e,f" and len(lines) == 5
    run(capsys, "encode", r, "--out", tmp_path / "z.csv")
    assert len((tmp_path / "z.csv").read_text().splitlines()) == 61
    run(capsys, "report", r)
    assert 'id="samples"' in (r / "index.html").read_text()


def test_load_table_label_column(tabular):
    d, X, species = tabular
    ds = load_table(d / "t.csv", label_column="species")
    assert ds.feature_names == ["a", "b", "c", "d", "e", "f"] and ds.target.tolist() == species.tolist()
    np.testing.assert_allclose(ds.data, X, atol=1e-4)
    with pytest.raises(DataError, match="no column 'kind'.*'species'"):
        load_table(d / "t.csv", label_column="kind")


# ------------------------------------------------------------------ errors: exit 2, one line naming the fix
@pytest.mark.parametrize("argv, says", [
    (["fit", "cvae", "--data", "{d}/x.npy"], "has no labels; pass --labels FILE"),
    (["fit", "cvae", "--data", "{d}/x.npy", "--labels", "{d}/y_short.npy"], "has 200 labels but the data has 300 rows"),
    (["fit", "cvae", "--data", "{d}/x.npy", "--label-column", "species"], "--label-column names a column of a CSV/TSV"),
    (["fit", "cvae", "--data", "{d}/t.csv", "--label-column", "kind"], "no column 'kind'"),
    (["fit", "cvae", "--data", "{d}/x.npy", "--labels", "{d}/y.npy", "--label-column", "species"], "pass one of them"),
    (["fit", "vae", "--data", "{d}/x.npy", "--labels", "{d}/y.npy"], "vae takes none; fit cvae"),
    (["fit", "pca", "--data", "{d}/t.csv", "--label-column", "species"], "pca takes none; fit cvae"),
])
def test_condition_errors_at_fit(tabular, capsys, tmp_path, argv, says):
    d, _, _ = tabular
    _, err = run(capsys, *[a.format(d=d) for a in argv], *TINY, "--out", tmp_path / "r", code=2)
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_condition_errors_at_use(cvae_digits, tabular, capsys, tmp_path):
    d, _, _ = tabular
    _, err = run(capsys, "sample", cvae_digits, "-n", "4", "--label", "11", "--out", tmp_path / "s.npy", code=2)
    assert "--label 11 is not a class" in err and "0, 1, 2" in err
    _, err = run(capsys, "reconstruct", cvae_digits, "--data", d / "x.npy", "--out", tmp_path / "r.npy", code=2)
    assert "has no labels; pass --labels" in err
    vae = tmp_path / "vae"
    run(capsys, "fit", "vae", *TINY, "--out", vae)
    _, err = run(capsys, "sample", vae, "-n", "4", "--label", "3", "--out", tmp_path / "s.npy", code=2)
    assert "vae takes none; drop --label" in err
    _, err = run(capsys, "encode", vae, "--labels", d / "y.npy", "--out", tmp_path / "z.npy", code=2)
    assert "vae takes none" in err
