"""Figures as matplotlib Figures, the self-contained HTML report, and the report in a real
headless Chromium: no console errors, every image loaded, and a screenshot."""

import base64
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from latentlab import PCA, VAE, Autoencoder, api, plots
from latentlab.datasets import load_digits
from latentlab.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models and matrices: one torch and BLAS thread is fastest (and a busy machine makes
    a second one spin)."""
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
    return d.data[:300], d.target[:300], d.image_shape


@pytest.fixture(scope="module")
def fitted(digits_small):
    X, _, _ = digits_small
    kw = dict(hidden=(16,), epochs=2, verbose=False)
    return {
        "pca": PCA(latent_dim=2).fit(X),
        "ae": Autoencoder(latent_dim=2, **kw).fit(X),
        "vae": VAE(latent_dim=2, **kw).fit(X),
        "vae3": VAE(latent_dim=3, **kw).fit(X),
    }


# ------------------------------------------------------------------ figures
@pytest.mark.parametrize("name", ["pca", "ae", "vae", "vae3"])
def test_every_figure_is_a_figure(fitted, digits_small, name):
    X, y, shape = digits_small
    m = fitted[name]
    figs = [
        plots.reconstructions(m, X, shape),
        plots.samples(m, shape, n=16),
        plots.interpolations(m, X, shape, pairs=2, steps=5),
        plots.latent_traversals(m, X, shape, steps=5),
    ]
    if m.latent_dim == 2:
        figs += [plots.latent_scatter(m, X, y), plots.manifold(m, shape, n=5, X=X)]
    if name == "pca":
        figs.append(plots.explained_variance(m, X))
    else:
        figs.append(plots.training_curves(m.history_))
    assert all(isinstance(f, Figure) for f in figs)
    for f in figs:  # each renders
        f.canvas.draw()


def test_figures_for_a_table():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6)).astype(np.float32)
    m = Autoencoder(latent_dim=2, hidden=(8,), epochs=1, verbose=False).fit(X)
    for f in (plots.reconstructions(m, X), plots.samples(m, X_ref=X), plots.interpolations(m, X), plots.latent_traversals(m, X)):
        assert isinstance(f, Figure)
        f.canvas.draw()


def test_training_curves_show_each_term(fitted):
    fig = plots.training_curves(fitted["vae"].history_)
    titles = {ax.get_title() for ax in fig.axes}
    assert {"loss", "rec", "kl"} <= titles
    ax = next(a for a in fig.axes if a.get_title() == "kl")
    assert {ln.get_label() for ln in ax.get_lines()} == {"train", "validation"}


def test_manifold_walks_the_prior_quantiles(fitted):
    """The decoded manifold's corners are the decodes of the prior's 5% and 95% quantiles."""
    from scipy.stats import norm

    m = fitted["vae"]
    fig = plots.manifold(m, (8, 8), n=5)
    mosaic = fig.axes[0].get_images()[0].get_array()
    q = norm.ppf([0.05, 0.95])
    top_left = m.inverse_transform(np.array([[q[0], q[1]]], np.float32)).reshape(8, 8)  # z1 high at the top
    np.testing.assert_allclose(np.ma.getdata(mosaic)[1:9, 1:9], np.clip(top_left, 0, 1), atol=1e-5)


# ------------------------------------------------------------------ the page
class _Imgs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.ids, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src", ""))
        if tag == "section":
            self.ids.append(a.get("id"))
        if tag in ("link", "script", "a") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    return api.compare("digits", 2, out, params={"epochs": 2, "hidden": (16,)}, eval_k=10)


def test_report_is_self_contained(comparison):
    page = comparison.report.read_text()
    p = _Imgs()
    p.feed(page)
    assert set(p.ids) >= {"metrics", "training", "reconstructions", "samples", "interpolations", "traversals", "scatter", "manifold"}
    assert len(p.srcs) == 4 * 7  # four models, seven figures each (PCA: explained variance for training curves)
    for src in p.srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(link.startswith("data:") for link in p.links)  # nothing fetched
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for model in ("PCA", "linear AE", "deep AE", "VAE"):
        assert f"<th>{model}</th>" in page
    assert "max_principal_angle_deg" in page


def test_single_run_report_for_a_table(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(60, 4)).astype(np.float32))
    run = api.fit(api.RunConfig("vae", str(tmp_path / "x.npy"), {"latent_dim": 3, "epochs": 1, "hidden": (8,)}, eval_k=5), tmp_path / "r")
    path = api.report(tmp_path / "r")
    assert path == tmp_path / "r" / "index.html"
    page = path.read_text()
    assert 'id="manifold"' not in page and 'id="scatter"' not in page  # 3-D latents, no labels, a table
    assert page.count("<img") == 5
    assert run.metrics["n_test"] == 6


# ------------------------------------------------------------------ in a real browser
_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => __errors.push(String(e.message || (e.target && (e.target.src || e.target.href)))), true);
window.addEventListener('unhandledrejection', e => __errors.push('unhandled rejection: ' + e.reason));
const _ce = console.error; console.error = (...a) => { __errors.push(a.join(' ')); _ce(...a); };
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  document.body.setAttribute('data-probe', JSON.stringify({images: imgs.length, bad: bad, errors: __errors,
    width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight}));
});
</script>"""


def _chromium(args, tmp_path, timeout=120):
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=timeout,
    )


def test_report_in_headless_chromium(comparison, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI must run the browser test (.ci/run installs Debian's chromium)")
        pytest.skip("chromium not installed (apt-get install chromium); CI installs it and runs this test")
    page = comparison.report.read_text()
    # The probe records errors and each image's state; it goes first in <head>, before anything else.
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + _PROBE, 1))
    r = _chromium(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--dump-dom", probed.as_uri()], tmp_path)
    m = re.search(r'data-probe="([^"]*)"', r.stdout)
    assert m, f"the page did not finish loading:\n{r.stderr[-2000:]}"
    status = json.loads(html.unescape(m.group(1)))
    assert status["errors"] == [] and status["bad"] == []
    assert status["images"] == 28
    assert status["width"] <= 1400  # no horizontal overflow at the default window width
    console = [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console
    # The report as a person sees it: the unmodified page.
    shot = tmp_path / "report.png"
    r = _chromium(["--hide-scrollbars", "--window-size=1280,4200", f"--screenshot={shot}", comparison.report.as_uri()], tmp_path)
    assert shot.is_file() and shot.stat().st_size > 50_000, r.stderr[-2000:]
    keep = os.environ.get("LATENTLAB_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, os.path.join(keep, "report.png"))
