"""explore.html in a real headless Chromium (Playwright, pointed at the system browser): the point
moves with the mouse and the sliders, the page's own decode matches the model's
inverse_transform of that point, nothing is fetched and the console stays clean."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from latentlab import PCA, VAE, Autoencoder, ConditionalVAE, api
from latentlab.cli import main
from latentlab.datasets import load_digits
from latentlab.errors import ConfigError
from latentlab.explorer import DECODERS, Unsupported, decoder_program, explore

CHROMIUM = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
KW = dict(hidden=(16,), epochs=2, verbose=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_small():
    d = load_digits()
    return d.data[:300], d.target[:300], d.images[:300]


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what}, and CI must run the browser test (.ci/run installs Debian's chromium and the dev extra)")
    pytest.skip(f"{what}; CI installs it and runs this test")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[dev]')")
    if CHROMIUM is None:
        _missing("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A page of the explorer with its console errors and the requests it made."""

    def __init__(self, browser, path):
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.errors, self.requests = [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.uri = path.resolve().as_uri()
        self.page.goto(self.uri)
        self.page.wait_for_function("window.latentlab && window.latentlab.ready")

    def state(self):
        return self.page.evaluate("({z: latentlab.zDecoded, x: latentlab.decoded, c: latentlab.c, dims: latentlab.dims,"
                                  " mode: latentlab.mode, density: latentlab.density, pad: latentlab.pad})")

    def click_pad(self, fx, fy):
        """Click at a fraction (fx from the left, fy from the top) of the pad's plotting area."""
        box = self.page.locator("#pad").bounding_box()
        pad = self.page.evaluate("latentlab.pad")
        x, y = box["x"] + pad["left"] + fx * pad["width"], box["y"] + pad["top"] + fy * pad["height"]
        self.page.mouse.move(x, y)
        self.page.mouse.down()
        self.page.mouse.up()
        return pad

    def slide(self, selector, value):
        self.page.evaluate("([s, v]) => { const el = document.querySelector(s); el.value = v; "
                           "el.dispatchEvent(new Event('input', {bubbles: true})); }", [selector, value])

    def close(self):
        assert self.errors == [], self.errors
        assert self.requests == [self.uri], self.requests  # the page itself, nothing else
        self.page.close()


def _matches(model, st, y=None):
    z = np.asarray(st["z"], dtype=np.float32)[None, :]
    ref = np.asarray(model.inverse_transform(z, y), dtype=np.float64).reshape(-1)
    np.testing.assert_allclose(np.asarray(st["x"]), ref, rtol=1e-4, atol=1e-5)
    return np.asarray(st["x"])


def test_the_pad_moves_the_point_and_the_page_decodes_like_the_autoencoder(browser, digits_small, tmp_path):
    X, y, _ = digits_small
    ae = Autoencoder(latent_dim=2, activation="gated", scale="minmax", **KW).fit(X)
    path = explore(ae, tmp_path / "explore.html", X=X, labels=y)
    p = Page(browser, path)
    st0 = p.state()
    assert st0["mode"] == "weights" and st0["dims"] == [0, 1]
    _matches(ae, st0)
    pad = p.click_pad(0.25, 0.75)
    st1 = p.state()
    lo, hi = pad["lo"], pad["hi"]
    assert st1["z"][0] == pytest.approx(lo[0] + 0.25 * (hi[0] - lo[0]), abs=0.01 * (hi[0] - lo[0]))
    assert st1["z"][1] == pytest.approx(lo[1] + 0.25 * (hi[1] - lo[1]), abs=0.01 * (hi[1] - lo[1]))
    x1 = _matches(ae, st1)
    p.click_pad(0.9, 0.1)
    x2 = _matches(ae, p.state())
    assert np.abs(x2 - x1).max() > 1e-3  # the decode follows the point
    # The shading: a corner of the pad far from every code has almost none of the codes' density.
    p.click_pad(0.01, 0.01)
    d_corner = p.state()["density"]
    assert d_corner < 0.02 and "never trained" in p.page.inner_text("#warn")
    p.page.evaluate(f"latentlab.setZ({json.dumps(np.median(ae.transform(X), 0).tolist())})")
    assert p.state()["density"] > 0.05 and not p.page.locator("#warn").is_visible()
    p.close()


def test_sliders_and_the_axes_of_a_3d_vae(browser, digits_small, tmp_path):
    X, y, _ = digits_small
    vae = VAE(latent_dim=3, activation="gelu", likelihood="bernoulli", **KW).fit((X > 0.5).astype(np.float32))
    path = explore(vae, tmp_path / "vae3.html", X=(X > 0.5).astype(np.float32), labels=y)
    p = Page(browser, path)
    before = p.state()
    p.slide("#z2", 1.5)
    st = p.state()
    step = (st["pad"]["hi"][2] - st["pad"]["lo"][2]) / 1000  # a range input keeps to its steps
    assert st["z"][2] == pytest.approx(1.5, abs=step)
    x = _matches(vae, st)
    assert np.abs(x - np.asarray(before["x"])).max() > 1e-4
    p.page.select_option("#dim1", "2")  # the pad's vertical axis shows z2
    p.click_pad(0.5, 0.2)
    st = p.state()
    assert st["dims"] == [0, 2] and st["z"][2] != pytest.approx(1.5, abs=1e-3)
    _matches(vae, st)
    p.close()


def test_a_convolutional_decoder_runs_in_the_page(browser, digits_small, tmp_path):
    _, y, images = digits_small
    vae = VAE(latent_dim=2, architecture="conv", channels=(4, 6), activation="elu", **KW).fit(images)
    prog = decoder_program(vae)
    assert [o["op"] for o in prog["ops"]].count("conv2d") == 2 and "upsample" in [o["op"] for o in prog["ops"]]
    p = Page(browser, explore(vae, tmp_path / "conv.html", X=images, labels=y))
    assert p.state()["mode"] == "weights"
    p.click_pad(0.3, 0.6)
    _matches(vae, p.state())
    assert p.page.locator("#out").count() == 1  # an image on a canvas
    p.close()


def test_a_conditional_vae_decodes_under_the_chosen_class(browser, digits_small, tmp_path):
    X, y, _ = digits_small
    cvae = ConditionalVAE(latent_dim=2, **KW).fit(X, y)
    p = Page(browser, explore(cvae, tmp_path / "cvae.html", X=X, y=y))
    p.page.select_option("#cond-class", "7")
    p.click_pad(0.6, 0.4)
    st = p.state()
    assert st["c"] == [1.0 if j == 7 else 0.0 for j in range(10)]
    x7 = _matches(cvae, st, y=np.array([7]))
    p.page.select_option("#cond-class", "1")
    x1 = _matches(cvae, p.state(), y=np.array([1]))
    assert np.abs(x7 - x1).max() > 1e-4
    p.close()


def test_a_decoder_with_unknown_layers_falls_back_to_a_grid(browser, digits_small, tmp_path):
    X, y, _ = digits_small
    ae = Autoencoder(latent_dim=2, **KW).fit(X)
    ae.module_.decoder = nn.Sequential(ae.module_.decoder, nn.Hardtanh(0.0, 1.0))  # a layer the page does not know
    with pytest.raises(Unsupported, match="Hardtanh"):
        decoder_program(ae)
    with pytest.raises(ConfigError, match="decoder='grid'"):
        explore(ae, tmp_path / "no.html", X=X, decoder="weights")
    path = explore(ae, tmp_path / "grid.html", X=X, labels=y, grid=9)
    p = Page(browser, path)
    p.click_pad(0.33, 0.52)
    st = p.state()
    assert st["mode"] == "grid"
    prog = json.loads(re.search(r'id="state">(.*?)</script>', path.read_text(), re.S).group(1))["program"]
    assert np.isclose(prog["xs"], st["z"][0]).sum() == 1 and np.isclose(prog["ys"], st["z"][1]).sum() == 1
    _matches(ae, st)  # the decode of the nearest grid point
    assert "grid" in p.page.inner_text("#notes")
    p.close()


def test_pca_of_a_table_shows_a_table(browser, tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(200, 3)) @ rng.normal(size=(3, 5)) + 10).astype(np.float32)
    pca = PCA(latent_dim=2, whiten=True, scale="standard").fit(X)
    names = ["a", "b", "c", "d", "e"]
    p = Page(browser, explore(pca, tmp_path / "pca.html", X=X, feature_names=names))
    p.slide("#z0", -1.0)
    st = p.state()
    x = _matches(pca, st)
    cells = p.page.locator("table.vals td.v").all_inner_texts()
    assert p.page.locator("table.vals td:first-child").all_inner_texts() == names
    np.testing.assert_allclose([float(c) for c in cells], x, rtol=1e-3)
    p.close()


def test_explore_from_the_command_line(tmp_path, capsys):
    from latentlab.cli.parser import EXPLORE_DECODERS

    assert EXPLORE_DECODERS == DECODERS
    run = api.fit(api.RunConfig("vae", "digits", {"latent_dim": 2, "hidden": (16,), "epochs": 2, "verbose": False}),
                  tmp_path / "vae")
    assert main(["explore", str(run.path), "--json"]) == 0
    page = json.loads(capsys.readouterr().out)["page"]
    assert page == str(tmp_path / "vae" / "explore.html")
    text = Path(page).read_text()
    assert "<script src" not in text and "http://" not in text and "https://" not in text  # nothing fetched
    state = json.loads(re.search(r'id="state">(.*?)</script>', text, re.S).group(1))
    assert state["n_points"] == 180 and state["program"]["mode"] == "weights" and len(state["label_names"]) == 10
    assert main(["explore", str(run.path), "--dims", "0,5"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
    assert main(["explore", str(run.path), "--decoder", "grid", "--grid", "1"]) == 2
    assert "grid must be an integer >= 2" in capsys.readouterr().err
    assert main(["explore", str(run.path), "--decoder", "grid", "--grid", "5", "--out", str(tmp_path / "g.html")]) == 0
    assert '"mode": "grid"' in (tmp_path / "g.html").read_text()
