"""latentlab sweep: one model over a grid of settings, its report, and runs named by what differs."""

import json

import pytest

from latentlab import api, cli

TINY = {"latent_dim": 2, "hidden": (16,), "epochs": 15, "seed": 0}


@pytest.fixture(scope="module")
def c_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "c"
    return api.sweep("vae", "digits", {"c": [0.2, 1.0, 5.0]}, out, params=TINY, eval_k=5, jobs=2, regularity=False)


def test_the_rate_falls_as_c_grows(c_sweep):
    rates = [c_sweep.table[f"vae c={c:g}"]["kl"] for c in (0.2, 1.0, 5.0)]
    assert rates[0] > rates[1] > rates[2]
    distortions = [c_sweep.table[f"vae c={c:g}"]["rec"] for c in (0.2, 1.0, 5.0)]
    assert distortions[0] < distortions[2]


def test_each_point_is_an_ordinary_run_on_one_split(c_sweep):
    infos = [json.loads((r.path / "run.json").read_text()) for r in c_sweep.runs]
    assert [i["sweep"] for i in infos] == [{"c": 0.2}, {"c": 1.0}, {"c": 5.0}]
    assert len({json.dumps(i["data"], sort_keys=True) for i in infos}) == 1  # same data, same split sizes
    m = api.evaluate(c_sweep.runs[1].path, k=5)
    assert m["kl"] == pytest.approx(c_sweep.table["vae c=1"]["kl"], rel=1e-6)


def test_the_report_shows_the_rate_distortion_plane_and_labels_by_setting(c_sweep):
    page = c_sweep.report.read_text()
    assert 'alt="rate-distortion plane"' in page and 'alt="metrics against c"' in page
    for c in ("0.2", "1", "5"):
        assert f"vae c={c}" in page
    assert "The constant c trades fidelity for latent regularity" in page


def test_report_of_several_runs_side_by_side_names_them_by_what_differs(c_sweep, tmp_path):
    path = api.report(c_sweep.runs[0].path, c_sweep.runs[2].path, out=tmp_path / "side")
    page = path.read_text()
    assert "vae c=0.2" in page and "vae c=5" in page


def test_a_grid_of_two_settings(tmp_path):
    points = api.sweep_points({"c": [0.5, 2.0], "latent_dim": [2, 3]})
    assert points == [{"c": 0.5, "latent_dim": 2}, {"c": 0.5, "latent_dim": 3}, {"c": 2.0, "latent_dim": 2},
                      {"c": 2.0, "latent_dim": 3}]


def test_sweep_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli.main(["sweep", "ae", "--data", "digits", "--latent-dim", "2,3", "--hidden", "8", "--epochs", "2",
                     "--eval-k", "2", "--out", str(out), "--json"])
    assert code == 0
    got = json.loads(capsys.readouterr().out)
    assert sorted(got["metrics"]) == ["ae latent_dim=2", "ae latent_dim=3"]
    assert (out / "latent_dim=2" / "run.json").is_file() and (out / "index.html").is_file()
    assert cli.main(["sweep", "ae", "--data", "digits", "--latent-dim", "2", "--out", str(tmp_path / "x")]) == 2
