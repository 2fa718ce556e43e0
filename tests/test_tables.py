"""Mixed-type tables: text (categorical), numeric and 0/1 columns fitted directly, from a CSV (no
pandas) or a pandas DataFrame; the mixed likelihood against torch's own distributions; tables
out with their columns, types and category names; saved without pickle."""

import json

import numpy as np
import pytest
import torch

import latentlab
from latentlab import PCA, VAE, Autoencoder, api, cli
from latentlab.datasets import load, load_table
from latentlab.errors import ConfigError, DataError
from latentlab.nn.mixed import MixedTable
from latentlab.tables import TableCodec

TINY = ["--epochs", "2", "--hidden", "16", "--eval-k", "5"]


def _rows(n=60, seed=0):
    """A tiny table: a colour (text), a size and a weight that depend on it, a 0/1 flag, a count."""
    rng = np.random.default_rng(seed)
    colour = np.array(["red", "green", "blue"])[rng.integers(0, 3, n)]
    base = {"red": 1.0, "green": 2.0, "blue": 3.0}
    size = np.array([base[c] for c in colour]) + 0.1 * rng.normal(size=n)
    weight = 10 * size + rng.normal(size=n)
    flag = (size > 2).astype(np.int64)
    count = rng.integers(0, 20, n)
    return colour, size, weight, flag, count


@pytest.fixture
def table_csv(tmp_path):
    colour, size, weight, flag, count = _rows()
    lines = ["colour,size,weight,flag,count"] + [f"{c},{s:.4f},{w:.4f},{f},{k}" for c, s, w, f, k in zip(colour, size, weight, flag, count)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "t.csv"


def run(capsys, *argv, code=0):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == code, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    return out, err


# --------------------------------------------------------------------------- the likelihood
def test_mixed_likelihood_is_the_sum_of_torch_distributions():
    torch.manual_seed(0)
    blocks = [("numeric", 0, 1), ("categorical", 1, 4), ("binary", 4, 5), ("numeric", 5, 6), ("categorical", 6, 8)]
    lik = MixedTable(blocks, init_var=np.array([4.0, 0.25]))
    np.testing.assert_allclose(lik.sigma.numpy(), [2.0, 0.5], rtol=1e-6)  # starts at the data's spread
    x = torch.tensor([[0.3, 0, 1, 0, 1, -1.2, 1, 0], [2.0, 1, 0, 0, 0, 0.4, 0, 1]])
    out = torch.randn(5, 2, 8)  # 5 samples of z per row
    sd = lik.sigma
    ref = (torch.distributions.Normal(out[..., [0, 5]], sd).log_prob(x[:, [0, 5]]).sum(-1)
           + torch.distributions.Bernoulli(logits=out[..., 4]).log_prob(x[:, 4])
           + torch.distributions.Categorical(logits=out[..., 1:4]).log_prob(x[:, 1:4].argmax(-1))
           + torch.distributions.Categorical(logits=out[..., 6:8]).log_prob(x[:, 6:8].argmax(-1)))
    torch.testing.assert_close(lik.log_prob(x, out), ref)
    m = lik.mean(out[0])
    torch.testing.assert_close(m[:, 1:4].sum(-1), torch.ones(2))
    torch.testing.assert_close(m[:, 4], torch.sigmoid(out[0, :, 4]))
    s = lik.sample(out[0].expand(2000, 2, 8), generator=torch.Generator().manual_seed(0))
    assert set(s[..., 1:4].sum(-1).unique().tolist()) == {1.0}  # one category drawn per block
    freq = s[:, 0, 1:4].mean(0)
    torch.testing.assert_close(freq, torch.softmax(out[0, 0, 1:4], -1), atol=0.04, rtol=0)
    with pytest.raises(DataError, match="one-hot block is not one-hot"):
        lik.check(np.array([[0.3, 1, 1, 0, 1, 0, 1, 0]]))


# --------------------------------------------------------------------------- from a CSV, without pandas
def test_a_csv_with_text_columns_loads_as_a_structured_table(table_csv):
    ds = load(str(table_csv))
    assert ds.kind == "mixed" and ds.feature_names == ["colour", "size", "weight", "flag", "count"]
    assert ds.data.dtype.names == ("colour", "size", "weight", "flag", "count")
    assert ds.data["colour"].dtype.kind == "U" and ds.data["count"].dtype == np.int64 and ds.data["size"].dtype == np.float64
    codec = TableCodec.fit(ds.data)
    assert [(c["name"], c["kind"]) for c in codec.columns] == [
        ("colour", "categorical"), ("size", "numeric"), ("weight", "numeric"), ("flag", "binary"), ("count", "numeric")]
    assert codec.columns[0]["categories"] == ["blue", "green", "red"] and codec.width == 7


def test_fit_sample_reconstruct_on_a_csv_table_from_the_command_line(tmp_path, capsys, table_csv):
    d = tmp_path / "vae"
    out, _ = run(capsys, "fit", "vae", "--data", table_csv, "--latent-dim", "2", *TINY, "--out", d)
    assert "reconstruction_accuracy" in out and "reconstruction_nrmse" in out
    cfg = json.loads((d / "config.json").read_text())  # the encoding, as JSON with the model
    assert cfg["state"]["table"]["columns"][0] == {"name": "colour", "kind": "categorical", "type": "str",
                                                   "categories": ["blue", "green", "red"]}
    assert cfg["state"]["feature_names_in"] == ["colour", "size", "weight", "flag", "count"]
    model = latentlab.load(d)
    assert model.likelihood_ == "mixed" and isinstance(model.module_.likelihood, MixedTable)
    run(capsys, "sample", d, "-n", "12", "--draw", "--seed", "3", "--out", tmp_path / "s.csv")
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "colour,size,weight,flag,count" and len(lines) == 13
    cells = [line.split(",") for line in lines[1:]]
    assert {c[0] for c in cells} <= {"red", "green", "blue"} and {c[3] for c in cells} <= {"0", "1"}
    assert all(c[4].lstrip("-").isdigit() for c in cells)  # an integer column comes back as integers
    run(capsys, "reconstruct", d, "--out", tmp_path / "r.csv")  # the test split, as a table
    rec = load_table(tmp_path / "r.csv").data
    assert rec.dtype.names == ("colour", "size", "weight", "flag", "count") and len(rec) == 6
    run(capsys, "sample", d, "-n", "5", "--out", tmp_path / "s.npy")
    S = np.load(tmp_path / "s.npy", allow_pickle=False)  # a structured array, no pickle
    assert S.dtype.names == rec.dtype.names and S["count"].dtype == np.int64
    _, err = run(capsys, "sample", d, "-n", "5", "--out", tmp_path / "s.png", code=2)
    assert "this data is a table" in err
    out, _ = run(capsys, "evaluate", d, "--k", "5", "--json")
    m = json.loads(out)["metrics"]
    assert 0 <= m["reconstruction_accuracy"] <= 1 and np.isfinite(m["log_likelihood"])
    run(capsys, "encode", d, "--out", tmp_path / "z.csv")
    assert len((tmp_path / "z.csv").read_text().splitlines()) == 61
    run(capsys, "report", d)  # training curves and the latent space for a table


def test_every_model_fits_a_table(table_csv):
    T = load(str(table_csv)).data
    for model in (PCA(latent_dim=2), Autoencoder(latent_dim=2, hidden=(8,), epochs=2, verbose=False),
                  Autoencoder(latent_dim=2, hidden=(8,), epochs=2, loss="mixed", verbose=False)):
        model.fit(T)
        R = model.reconstruct(T[:5])
        assert R.dtype == T.dtype and set(R["colour"]) <= {"red", "green", "blue"}
        assert model.transform(T).shape == (60, 2) and model.n_features_in_ == 5
    # the encoded matrix, as latentlab's own functions pass it on, is taken too
    A = model.table_.encode(T)
    np.testing.assert_array_equal(model.transform(A), model.transform(T))
    with pytest.raises(DataError, match=r"fitted on a table of 5 columns \(colour, size, weight, flag, count\), which "
                                        r"encode into 7 features"):
        model.transform(np.zeros((3, 5)))


def test_a_table_model_is_saved_without_pickle_and_gives_the_same_table(tmp_path, table_csv):
    T = load(str(table_csv)).data
    vae = VAE(latent_dim=2, hidden=(8,), epochs=3, verbose=False).fit(T)
    again = latentlab.load(vae.save(tmp_path / "m"))
    a, b = vae.sample(20, seed=1, mean=False), again.sample(20, seed=1, mean=False)
    assert a.dtype == b.dtype and all((a[n] == b[n]).all() if a[n].dtype.kind == "U" else np.allclose(a[n], b[n]) for n in a.dtype.names)
    np.testing.assert_allclose(vae.score_samples(T), again.score_samples(T), rtol=1e-5)


# --------------------------------------------------------------------------- from pandas
pd = pytest.importorskip("pandas", reason="pandas is not installed: DataFrame tables are not checked")


def _frame():
    colour, size, weight, flag, count = _rows()
    return pd.DataFrame({"colour": colour, "kind": pd.Categorical(np.where(size > 2, "big", "small"), categories=["small", "big"]),
                         "size": size, "weight": weight, "flag": flag.astype(bool), "count": count})


def test_a_dataframe_table_fits_and_comes_back_with_its_types():
    df = _frame()
    vae = VAE(latent_dim=2, hidden=(16,), epochs=3, verbose=False).fit(df)
    assert vae.likelihood_ == "mixed" and list(vae.feature_names_in_) == list(df.columns)
    S = vae.sample(30, seed=0, mean=False)
    assert isinstance(S, pd.DataFrame) and list(S.columns) == list(df.columns)
    assert S["kind"].dtype == "category" and list(S["kind"].cat.categories) == ["small", "big"]
    assert S["flag"].dtype == bool and S["count"].dtype == np.int64 and S["size"].dtype == np.float64
    assert set(S["colour"]) <= {"red", "green", "blue"} and pd.api.types.is_string_dtype(S["colour"])
    R = vae.reconstruct(df.head(4))
    assert isinstance(R, pd.DataFrame) and R.shape == (4, 6)
    Z = vae.set_output(transform="pandas").transform(df)
    assert list(Z.columns) == ["vae0", "vae1"]
    P = vae.interpolate(df.iloc[[0]], df.iloc[[1]], steps=3)
    assert isinstance(P, pd.DataFrame) and len(P) == 3


def test_table_errors_name_the_problem(tmp_path):
    df = _frame()
    vae = VAE(latent_dim=2, hidden=(8,), epochs=1, verbose=False).fit(df)
    with pytest.raises(DataError, match="Feature names must be in the same order as they were in fit"):
        vae.transform(df[df.columns[::-1]])
    with pytest.raises(DataError, match="Feature names seen at fit time, yet now missing:\n- weight"):
        vae.transform(df.drop(columns=["weight"]))
    odd = df.head(3).copy()
    odd["colour"] = ["red", "purple", "blue"]
    with pytest.raises(DataError, match=r"column 'colour' has the value 'purple' \(row 1\), which was not seen at fit; "
                                        r"its categories are \['blue', 'green', 'red'\]"):
        vae.transform(odd)
    holes = df.copy()
    holes.loc[3, "colour"] = None
    holes.loc[5, "size"] = np.nan
    with pytest.raises(DataError, match=r"X has 2 missing or non-finite value\(s\), in column\(s\) 'colour' \(1\), 'size' "
                                        r"\(1\), the first in row 3; drop those rows \(df.dropna\(\)\)"):
        VAE(epochs=1, verbose=False).fit(holes)
    with pytest.raises(ConfigError, match="likelihood=.mixed. is for mixed-type tables"):
        VAE(likelihood="mixed", epochs=1, verbose=False).fit(np.random.default_rng(0).normal(size=(20, 3)))


def test_the_penguins_fit_and_their_samples_keep_the_dependence_between_columns():
    """The real table palmerpenguins ships (incomplete rows dropped): a short fit whose samples
    keep the correlation of flipper length and body mass (0.87) that independent columns lose."""
    palmerpenguins = pytest.importorskip("palmerpenguins", reason="palmerpenguins is not installed")
    df = palmerpenguins.load_penguins().drop(columns=["year"]).dropna().reset_index(drop=True)
    vae = VAE(latent_dim=2, hidden=(32, 32), epochs=60, batch_size=32, patience=None, verbose=False).fit(df)
    assert vae.likelihood_ == "mixed" and vae.table_.width == 3 + 3 + 4 + 2
    S = vae.sample(2000, seed=0, mean=False)
    assert set(S["species"]) == {"Adelie", "Chinstrap", "Gentoo"}
    r_data = df["flipper_length_mm"].corr(df["body_mass_g"])
    r_vae = S["flipper_length_mm"].corr(S["body_mass_g"])
    assert r_data > 0.85 and r_vae > 0.5, (r_data, r_vae)
    gentoo = S["species"] == "Gentoo"  # the heavy species, in the samples too
    assert S.loc[gentoo, "body_mass_g"].mean() > S.loc[~gentoo, "body_mass_g"].mean() + 500


def test_api_sample_and_reconstruct_give_tables(tmp_path, table_csv):
    api.fit(api.RunConfig("vae", str(table_csv), {"latent_dim": 2, "hidden": (8,), "epochs": 2}, eval_k=5), tmp_path / "r")
    S = api.sample(tmp_path / "r", 7, draw=True)
    assert S.dtype.names == ("colour", "size", "weight", "flag", "count") and len(S) == 7
    X, R = api.reconstruct(tmp_path / "r")
    assert X.dtype.names == R.dtype.names and len(X) == len(R) == 6
