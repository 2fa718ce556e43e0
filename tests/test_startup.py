"""A command line that starts fast: `--version` and `--help` import neither torch, scikit-learn
nor matplotlib; the help listing, built without the registry, matches the full parser."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

HEAVY = ("torch", "sklearn", "matplotlib", "scipy", "pandas")

_PROBE = r"""
import json, sys
from latentlab import cli
codes = [cli.main(a) for a in ({argvs})]
print(json.dumps({{"codes": codes, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def _probe(*argvs):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    code = _PROBE.format(argvs=", ".join(map(repr, argvs)) + ",", heavy=HEAVY)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_version_and_help_import_no_heavy_library():
    r = _probe(["--version"], ["--help"], [])
    assert r["codes"] == [0, 0, 2]  # no command: the help, exit 2
    assert r["heavy"] == [], f"`latentlab --version/--help` imported {r['heavy']}"


def test_python_m_latentlab_version_imports_no_heavy_library():
    """The entry point itself (`python -m latentlab`), measured with -X importtime."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "latentlab", "--version"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().startswith("latentlab ")
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_the_listing_built_without_the_registry_matches_the_full_parser():
    import argparse

    from latentlab.cli import build_parser

    def commands(parser):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return {c.dest: c.help for c in sub._choices_actions}, list(sub.choices)

    full, lazy = build_parser(), build_parser(["--version"])
    assert commands(full) == commands(lazy)
    assert lazy.format_help() == full.format_help()
    # the one command named gets its options; the others are listed only
    fit = build_parser(["fit", "vae", "--help"])
    sub = next(a for a in fit._actions if isinstance(a, argparse._SubParsersAction))
    assert any("--data" in a.option_strings for a in sub.choices["fit"]._subparsers._group_actions[0].choices["vae"]._actions)
    assert not any("--split" in a.option_strings for a in sub.choices["encode"]._actions)


def test_not_fitted_error_is_scikit_learns_without_importing_it_first():
    from sklearn.exceptions import NotFittedError as SkNotFitted

    from latentlab import VAE
    from latentlab.errors import LatentlabError, NotFittedError

    assert issubclass(NotFittedError, SkNotFitted) and issubclass(NotFittedError, LatentlabError)
    with pytest.raises(SkNotFitted):
        VAE().transform([[0.0, 1.0]])
    import latentlab.errors as errors

    assert errors.NotFittedError is NotFittedError  # made once
    with pytest.raises(AttributeError):
        errors.NoSuchError  # noqa: B018
