"""The ``latentlab`` argument parser: its commands, their options and examples."""

from __future__ import annotations

import argparse
import inspect

from . import commands
from .options import Parser, add_model_options, as_list

__all__ = ["build_parser", "COMMAND_HELP"]


_EPILOG_MAIN = """examples:
  latentlab demo                                   # the main job: four models on the digits, one report
  latentlab fit vae --data digits --latent-dim 2 --out runs/vae
  latentlab fit cvae --data digits --latent-dim 2 --out runs/cvae   # conditioned on the digit labels
  latentlab sample runs/cvae -n 30 --label 3 --out threes.png
  latentlab evaluate runs/vae --json
  latentlab sample runs/vae -n 64 --out samples.png
  latentlab compare --data mnist --latent-dim 16 --out runs/mnist
  latentlab report runs/vae
  latentlab explore runs/vae                       # explore.html: drag a point, watch it decode
  latentlab export runs/vae --format onnx          # runs/vae/export/encoder.onnx, decoder.onnx

exit status: 0 success, 2 bad usage or input, 1 other errors, 130 interrupted."""


#: Examples in `latentlab fit MODEL --help`, where the default one is not enough.
_FIT_EXAMPLES = {
    "iwae": ["latentlab fit iwae --data binarized-mnist --latent-dim 50 --k 50 --out runs/iwae"],
    "vamp": ["latentlab fit vamp --data binarized-mnist --latent-dim 40 --n-pseudo-inputs 500 --out runs/vamp"],
    "hvae": ["latentlab fit hvae --data binarized-mnist --latent-dim 40 --latent-dim2 40 --out runs/hvae   # codes: [z1 | z2]"],
    "cvae": [
        "latentlab fit cvae --data digits --latent-dim 2 --out runs/cvae            # condition: the digit labels",
        "latentlab fit cvae --data x.npy --labels y.npy --latent-dim 4 --out runs/c  # labels (n,) or side inputs (n, m)",
        "latentlab fit cvae --data table.csv --label-column species --out runs/t     # a CSV column as the condition",
        "latentlab sample runs/cvae -n 30 --label 3,5 --out threes-and-fives.png",
    ],
}


def _condition_options(p, *, fit: bool = False) -> None:
    """--labels and --label-column: where a conditional model's condition comes from."""
    from ..runs import conditional_models

    g = p.add_argument_group("condition (conditional models: " + ", ".join(conditional_models()) + ")")
    default = ("the source's own labels (digits, mnist, fashion-mnist, image folders with one subfolder a class)"
               if fit else "what the run was fitted with for its own data, the labels of --data for another source")
    g.add_argument("--labels", metavar="SOURCE", default=None,
                   help="one label per row of the data (numbers or text), or an (n, m) matrix of side inputs, in any "
                   "file --data takes: FILE.npy, FILE.npz[:KEY] (keys train/valid/test: one array each), FILE.csv/.tsv, "
                   f"an IDX labels file, ... (default: {default})")
    g.add_argument("--label-column", metavar="NAME", default=None,
                   help="for a .csv/.tsv source: the column that holds the condition (removed from the features)")


def _common(json_flag: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print the traceback of an error")
    p.add_argument("--trust-code", action="store_true", default=argparse.SUPPRESS,
                   help="let a run fitted with networks of your own (--encoder pkg.mod:Name ...) import that code to "
                   "rebuild them; importing a module runs it, so only for runs you trust")
    if json_flag:
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object instead of text")
    return p


def _data_option(p, default_text: str = "digits") -> None:
    from ..datasets.sources import describe_sources

    p.add_argument("--data", metavar="SOURCE", default=None, help=f"the data (default: {default_text}). {describe_sources()}")


def _split_options(p) -> None:
    from ..runs import RunConfig

    fields = {f.name: f.default for f in __import__("dataclasses").fields(RunConfig)}
    p.add_argument("--test-fraction", type=float, default=fields["test_fraction"], metavar="F",
                   help="share held out as the test split when the data has none of its own (default: %(default)s)")
    p.add_argument("--split-seed", type=int, default=fields["split_seed"], metavar="S", help="seed of that split (default: %(default)s)")
    p.add_argument("--eval-k", type=int, default=fields["eval_k"], metavar="K",
                   help="importance samples for the test log-likelihood recorded at the end (default: %(default)s)")


def _log_options(p) -> None:
    """--log and --log-dir: the trackers a fit reports each epoch to (history.jsonl is always written)."""
    g = p.add_argument_group("tracking (every run directory also gets history.jsonl, one JSON line per epoch)")
    g.add_argument("--log", action="append", choices=("tensorboard", "mlflow"), default=argparse.SUPPRESS,
                   help="also log every epoch to TensorBoard (event files in RUN_DIR/tensorboard; pip install "
                   "'latentlab[tensorboard]') or MLflow (a run in RUN_DIR/mlruns, or $MLFLOW_TRACKING_URI; pip install "
                   "'latentlab[mlflow]'); give it twice for both")
    g.add_argument("--log-dir", metavar="DIR_OR_URI", default=argparse.SUPPRESS,
                   help="where --log writes instead: TensorBoard's event folder, or MLflow's tracking URI or store folder")
    g.add_argument("--callback", action="append", metavar="MODULE:NAME(K=V)", default=argparse.SUPPRESS,
                   help="a latentlab.Callback of your own, built from an importable module (on PYTHONPATH) with "
                   "literal keyword arguments, e.g. --callback 'mycbs:TimeBudget(seconds=600)'; may be repeated")


#: The commands' one-line help, as `latentlab --help` lists them. The listing is built from this
#: table alone; a command's own options only when it is the one run (see :func:`build_parser`).
COMMAND_HELP = {
    "fit": "fit a model and save the run",
    "evaluate": "measure a saved run",
    "encode": "write the codes of the data",
    "reconstruct": "write reconstructions of the data",
    "sample": "decode random latent points",
    "interpolate": "decode the line between two examples' codes",
    "export": "write the encoder and the decoder as ONNX or TorchScript",
    "explore": "write explore.html: move a point through the latent space",
    "compare": "PCA, linear AE, deep AE and VAE side by side",
    "sweep": "one model over a grid of settings, one run each",
    "report": "write the HTML report of a run or a comparison",
    "demo": "the main job: four models on the digits, compared",
}


def _command_of(argv) -> str | None:
    """The command named by ``argv`` (its first word that is not an option), or None."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The argument parser of the ``latentlab`` command (subcommands and their options).

    With ``argv``, only the command it names gets its options (the others are listed with their
    help line): building a command's options imports what it needs (the model registry, and with
    it torch, for ``fit`` and ``compare``), so ``latentlab --version`` and ``--help`` start in a
    fraction of a second. Without ``argv``, every command is built.
    """
    from .._version import __version__

    common = _common()
    parser = Parser(
        prog="latentlab",
        description="From PCA to variational autoencoders: fit, evaluate, compare and report latent-variable "
        "models on your data.",
        epilog=_EPILOG_MAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"latentlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    wanted = None if argv is None else _command_of(argv)
    for add, names in _BUILDERS:
        if argv is None or wanted in names:
            add(sub, common)
        else:
            for name in names:  # listed in the help, options not built
                sub.add_parser(name, help=COMMAND_HELP[name], add_help=False)
    return parser


def _add_fit(sub, common) -> None:
    """latentlab fit MODEL: one subcommand per registered model, with its constructor's options."""
    from ..models import MODELS
    from ..runs import conditional_models

    fmt = argparse.RawDescriptionHelpFormatter
    fit = sub.add_parser("fit", parents=[common], help=COMMAND_HELP["fit"], formatter_class=fmt,
                         description="Fit a model on a data source and save the run directory (model, checkpoint, run.json).",
                         epilog="examples:\n  latentlab fit vae --data digits --latent-dim 2 --out runs/vae\n"
                         "  latentlab fit ae --data table.csv --latent-dim 3 --hidden 64,32 --out runs/ae\n"
                         "  latentlab fit --resume runs/vae            # continue after Ctrl-C or with more --epochs\n"
                         "  latentlab fit --resume runs/vae --lr 1e-4  # after a divergence: a lower learning rate")
    fit.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR from its last checkpoint")
    fit.add_argument("--epochs", dest="param_epochs", type=int, default=argparse.SUPPRESS, metavar="N",
                     help="with --resume: train up to N epochs in all (the run's own setting otherwise)")
    _resume_options(fit)
    _log_options(fit)
    models = fit.add_subparsers(dest="model", metavar="MODEL", parser_class=Parser)
    for name, cls in MODELS.items():
        summary = (inspect.getdoc(cls) or name).splitlines()[0]
        mp = models.add_parser(name, parents=[common], help=summary, description=f"{name}: {summary}", formatter_class=fmt,
                               epilog="example" + ("s" if name in _FIT_EXAMPLES else "") + ":\n  " + "\n  ".join(
                                   _FIT_EXAMPLES.get(name, [f"latentlab fit {name} --data digits --latent-dim 2 --out runs/{name}"])))
        _data_option(mp)
        default_k = inspect.signature(cls).parameters["latent_dim"].default
        what = ("size of z1, the layer next to the data (codes are [z1 | z2], see --latent-dim2)"
                if "latent_dim2" in inspect.signature(cls).parameters else "latent size")
        mp.add_argument("--latent-dim", type=int, default=None, metavar="K", help=f"{what} (default: {default_k})")
        mp.add_argument("--out", metavar="RUN_DIR", default=None, help="run directory to write (required)")
        mp.add_argument("--resume", metavar="RUN_DIR", default=argparse.SUPPRESS, help="continue the run in RUN_DIR")
        _split_options(mp)
        if name in conditional_models():
            _condition_options(mp, fit=True)
        if name != "pca":  # fitted in closed form: no epochs to log
            _log_options(mp)
        add_model_options(mp, {name: cls}, f"{name} options")
    fit.set_defaults(handler=commands.cmd_fit)



def _number_or_none(conv, what):
    def parse(text: str):
        if text.strip().lower() == "none":
            return None
        try:
            return conv(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} or 'none', got {text!r}") from None

    parse.__name__ = what
    return parse


def _resume_options(fit) -> None:
    """What `fit --resume RUN_DIR` may change besides --epochs (the divergence message's advice)."""
    fit.add_argument("--lr", dest="param_lr", type=float, default=argparse.SUPPRESS, metavar="LR",
                     help="with --resume: the learning rate from here on (e.g. lower, after a divergence)")
    fit.add_argument("--patience", dest="param_patience", type=_number_or_none(int, "an integer"), default=argparse.SUPPRESS,
                     metavar="N", help="with --resume: early-stopping patience from here on ('none': train all epochs)")
    fit.add_argument("--grad-clip", dest="param_grad_clip", type=_number_or_none(float, "a number"), default=argparse.SUPPRESS,
                     metavar="NORM", help="with --resume: clip the gradient norm from here on ('none': no clipping)")
    _changed_data_option(fit)


def _changed_data_option(p) -> None:
    p.add_argument("--allow-changed-data", action="store_true", default=False,
                   help="use the run's data even though it changed since the fit (rows appended, file replaced): "
                   "its split is then made again on the data as it is now")


def _add_evaluate(sub, common) -> None:
    from .. import api
    from ..runs import SPLITS

    fmt = argparse.RawDescriptionHelpFormatter
    k_default = inspect.signature(api.evaluate).parameters["k"].default
    ev = sub.add_parser("evaluate", parents=[common], help=COMMAND_HELP["evaluate"], formatter_class=fmt,
                        description="Measure a run: reconstruction error, ELBO, importance-sampled log-likelihood, "
                        "bits per dimension, active units (latentlab.evaluation).",
                        epilog="examples:\n  latentlab evaluate runs/vae\n  latentlab evaluate runs/vae --split train --k 5000 --json")
    ev.add_argument("run_dir", metavar="RUN_DIR")
    _data_option(ev, "the run's own data")
    ev.add_argument("--split", choices=SPLITS, default=None, help="which rows (default: test)")
    ev.add_argument("--k", type=int, default=k_default, help="importance samples per example (default: %(default)s)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the Monte-Carlo estimates (default: %(default)s)")
    _condition_options(ev)
    _changed_data_option(ev)
    ev.set_defaults(handler=commands.cmd_evaluate)


def _add_use_commands(sub, common) -> None:
    """encode, reconstruct, sample, interpolate: a run directory and the data to use it on."""
    from ..runs import SPLITS

    fmt = argparse.RawDescriptionHelpFormatter
    def use_cmd(name, desc, example, handler, *, data=True, split_default="all"):
        p = sub.add_parser(name, parents=[common], help=COMMAND_HELP[name], description=desc, formatter_class=fmt, epilog=f"example:\n  {example}")
        p.add_argument("run_dir", metavar="RUN_DIR")
        if data:
            _data_option(p, "the run's own data")
            default_text = split_default or "test, or all for another source without a test split"
            p.add_argument("--split", choices=SPLITS, default=split_default,
                           help="which rows: all (every row of the source, in order; for sources with their own splits, "
                           f"the training set), train, valid or test (default: {default_text})")
            _condition_options(p)
            _changed_data_option(p)
        p.set_defaults(handler=handler)
        return p

    p = use_cmd("encode", "Encode every row of the data (posterior means for a VAE); "
                "a CSV gets one row per input row. A hierarchical VAE (hvae) writes its codes [z1 | z2], "
                "latent_dim + latent_dim2 columns, as its transform gives them; a conditional VAE encodes each row "
                "with its own condition.", "latentlab encode runs/vae --data digits --out codes.csv", commands.cmd_encode)
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.npy or FILE.csv")
    p = use_cmd("reconstruct", "Reconstruct the data through the model: .npy/.csv "
                "hold every row (in the data's own units); .png shows the first -n originals above their reconstructions.",
                "latentlab reconstruct runs/vae --data digits --out rec.png", commands.cmd_reconstruct, split_default=None)
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.npy, FILE.csv or FILE.png")
    p.add_argument("-n", type=int, default=32, help="examples in a PNG (default: %(default)s)")
    p = use_cmd("sample", "Generate by decoding random latent points: z ~ N(0, I) for a "
                "VAE (its prior; the VampPrior's mixture; the hierarchical VAE's p(z2) p(z1|z2)); for PCA, probabilistic "
                "PCA's latent Gaussian; an autoencoder has no prior, so z ~ N(0, I) shows how it fails. A conditional VAE "
                "decodes under --label.", "latentlab sample runs/vae -n 64 --out samples.png --seed 1", commands.cmd_sample, data=False)
    p.add_argument("-n", type=int, default=64, help="how many (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.npy, FILE.csv or FILE.png")
    p.add_argument("--seed", type=int, default=0, help="same seed, same samples (default: %(default)s)")
    p.add_argument("--draw", action="store_true",
                   help="draw x from p(x|z) instead of writing its mean E[x|z] (for a mixed-type table: each category "
                   "drawn from its probabilities, not the most probable one); models with a likelihood only")
    p.add_argument("--label", metavar="L[,L...]", default=None,
                   help="conditional models: the class(es) to sample, shared equally, e.g. --label 3 or --label 3,5 "
                   "(default: an equal share of every class; a .png shows one row per class); for side inputs, the m "
                   "values of one, v1,...,vm")
    p.add_argument("--sampler", choices=("prior", "gmm", "gaussian"), default="prior",
                   help="where the latent points come from: the model's prior (default; N(0, I) for an autoencoder), "
                   "a Gaussian mixture fitted to the training codes (components by BIC), or one Gaussian fitted to them")
    p = use_cmd("interpolate", "Decode the straight line between the "
                "codes of rows I and J of the data.", "latentlab interpolate runs/vae --data digits --from 0 --to 7 --steps 10 --out line.png",
                commands.cmd_interpolate)
    p.add_argument("--from", dest="start", type=int, required=True, metavar="I", help="row of the first example")
    p.add_argument("--to", dest="end", type=int, required=True, metavar="J", help="row of the second example")
    p.add_argument("--steps", type=int, default=10, help="points on the line, ends included (default: %(default)s)")
    p.add_argument("--label", metavar="L", default=None,
                   help="conditional models: decode the whole line under this class (default: the condition moves "
                   "along the line between the two rows' own)")
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.png, FILE.npy or FILE.csv")


#: latentlab.exporter.FORMATS and latentlab.explorer.DECODERS, named here so that building the parser
#: imports neither (tests/test_export.py and tests/test_explore.py check that they agree).
EXPORT_FORMATS = ("onnx", "torchscript")
EXPLORE_DECODERS = ("auto", "weights", "grid")


def _add_export(sub, common) -> None:
    """latentlab export RUN: the encoder and the decoder as ONNX or TorchScript files."""
    fmt = argparse.RawDescriptionHelpFormatter
    ex = sub.add_parser("export", parents=[common], help=COMMAND_HELP["export"],
                        formatter_class=fmt,
                        description="Write the run's encoder and decoder as two files (encoder.onnx and decoder.onnx, or "
                        ".pt for TorchScript) and export.json, which names their inputs and outputs with shapes. The data "
                        "scaling is folded in: the encoder takes the data as you have it, (batch, *input shape) float32, "
                        "and returns the codes (posterior means for the VAE family; --logvar adds their log-variances); "
                        "the decoder returns E[x|z] in the data's units (for a Bernoulli decoder, probabilities). The "
                        "batch dimension is dynamic. A conditional VAE takes its condition as a second input y: one-hot "
                        "rows in the order of the classes in export.json (or the side inputs).",
                        epilog="examples:\n  latentlab export runs/vae                       # runs/vae/export/{encoder,decoder}.onnx\n"
                        "  latentlab export runs/vae --format torchscript --out vae-ts   # torch.jit.load('vae-ts/encoder.pt')")
    ex.add_argument("run_dir", metavar="RUN_DIR")
    ex.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="file format (default: %(default)s)")
    ex.add_argument("--out", metavar="DIR", default=None, help="folder to write (default: RUN_DIR/export)")
    ex.add_argument("--logvar", action="store_true", help="VAE family: the encoder also returns the posterior log-variances")
    ex.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset version (default: the exporter's)")
    ex.set_defaults(handler=commands.cmd_export)


def _add_explore(sub, common) -> None:
    """latentlab explore RUN: the interactive latent-space page."""
    from ..runs import SPLITS

    fmt = argparse.RawDescriptionHelpFormatter
    ep = sub.add_parser("explore", parents=[common], help=COMMAND_HELP["explore"],
                        formatter_class=fmt,
                        description="Write a self-contained explore.html (no server, nothing fetched): drag a point over "
                        "a 2-D pad of the latent space (sliders for every dimension, and a choice of the two the pad "
                        "shows) and see it decoded at once, beside the test codes coloured by label and a shading of "
                        "where they lie. Decoding runs in the page from the decoder's embedded weights (MLP and "
                        "convolutional decoders, PCA); a decoder with layers the page does not know is shown from a "
                        "grid of decodes.",
                        epilog="examples:\n  latentlab explore runs/vae && xdg-open runs/vae/explore.html\n"
                        "  latentlab explore runs/vae16 --dims 3,7 --out vae16.html")
    ep.add_argument("run_dir", metavar="RUN_DIR")
    ep.add_argument("--out", metavar="FILE", default=None, help="the page to write (default: RUN_DIR/explore.html)")
    _data_option(ep, "the run's own data")
    ep.add_argument("--split", choices=SPLITS, default=None,
                    help="which rows are shown as points (default: test; for another --data without a test split, all)")
    _condition_options(ep)
    ep.add_argument("--dims", metavar="I,J", default=None, help="the two latent dimensions the pad starts on (default: 0,1)")
    ep.add_argument("--decoder", choices=EXPLORE_DECODERS, default="auto",
                    help="decode from the embedded weights, or from a grid of decodes; auto: the weights where every "
                    "layer is known (default: %(default)s)")
    ep.add_argument("--grid", type=int, default=24, metavar="N", help="points per side of that grid (default: %(default)s)")
    ep.add_argument("--max-points", type=int, default=2000, metavar="N",
                    help="at most N rows shown as points, a seeded random choice (default: %(default)s)")
    ep.set_defaults(handler=commands.cmd_explore)


def _add_compare(sub, common) -> None:
    from .. import api
    from ..models import MODELS

    fmt = argparse.RawDescriptionHelpFormatter
    cp = sub.add_parser("compare", parents=[common], help=COMMAND_HELP["compare"], formatter_class=fmt,
                        description="Fit PCA, a linear autoencoder (hidden=()), a deep autoencoder and a VAE on the same data, "
                        "split and latent size; measure them; write their runs and one report (DIR/index.html).",
                        epilog="example:\n  latentlab compare --data digits --latent-dim 2 --epochs 50 --out runs/cmp")
    _data_option(cp)
    cp.add_argument("--latent-dim", type=int, default=None, metavar="K",
                    help=f"latent size of all four (default: {inspect.signature(api.compare).parameters['latent_dim'].default})")
    cp.add_argument("--out", required=True, metavar="DIR", help="folder for the four runs and the report")
    _split_options(cp)
    g = cp.add_argument_group("labels (the feature space's classifier is trained on them; the latent scatter is coloured by them)")
    g.add_argument("--labels", metavar="SOURCE", default=None,
                   help="one label per row of the data, in any file --data takes: FILE.npy, FILE.npz[:KEY], FILE.csv, "
                   "an IDX labels file, ... (default: the source's own labels; without labels, the Frechet distances are "
                   "measured on the data's principal components)")
    g.add_argument("--label-column", metavar="NAME", default=None,
                   help="for a .csv/.tsv source: the column that holds the labels (removed from the features)")
    classes = {}
    for label, (model, _) in api.COMPARE_SET.items():
        classes.setdefault(model, MODELS[model])
    add_model_options(cp, classes, "model options (each applies to the models that take it; --hidden not to the linear AE)",
                      exclude=("encoder", "decoder"))
    cp.set_defaults(handler=commands.cmd_compare)



def _add_sweep(sub, common) -> None:
    """latentlab sweep MODEL: the model's options take lists of values; several lists make a grid."""
    from ..models import MODELS
    from ..runs import conditional_models

    fmt = argparse.RawDescriptionHelpFormatter
    sw = sub.add_parser("sweep", parents=[common], help=COMMAND_HELP["sweep"], formatter_class=fmt,
                        description="Fit one model over a grid of settings on the same data and split: every option "
                        "takes a comma list (layer sizes: a ';' list, e.g. --hidden '64;128,64'), several lists make a grid. "
                        "Each point is an ordinary run directory in DIR (resumable, evaluable, reportable alone); "
                        "DIR/index.html shows the rate-distortion plane and each metric against the swept value.",
                        epilog="examples:\n  latentlab sweep vae --data digits --latent-dim 8 --c 0.1,0.3,1,3,10 --out runs/c --jobs 2\n"
                        "  latentlab sweep vae --data digits --c 0.3,3 --latent-dim 2,8 --out runs/grid")
    models = sw.add_subparsers(dest="model", metavar="MODEL", parser_class=Parser)
    for name, cls in MODELS.items():
        summary = (inspect.getdoc(cls) or name).splitlines()[0]
        mp = models.add_parser(name, parents=[common], help=summary, description=f"sweep {name}: {summary}",
                               formatter_class=fmt)
        _data_option(mp)
        mp.add_argument("--latent-dim", dest="param_latent_dim", type=as_list(int), default=argparse.SUPPRESS,
                        metavar="K[,K...]", help="latent size(s)")
        mp.add_argument("--out", metavar="DIR", required=True, help="folder for the points and the report")
        mp.add_argument("--jobs", type=int, default=1, help="points trained at once, as local processes (default: 1)")
        _split_options(mp)
        if name in conditional_models():
            _condition_options(mp, fit=True)
        add_model_options(mp, {name: cls}, f"{name} options (each a list of values)", lists=True)
    sw.set_defaults(handler=commands.cmd_sweep)


def _add_report_and_demo(sub, common) -> None:
    from .. import api

    fmt = argparse.RawDescriptionHelpFormatter
    rp = sub.add_parser("report", parents=[common], help=COMMAND_HELP["report"], formatter_class=fmt,
                        description="Write index.html (self-contained: figures embedded) for a run directory, or for a folder "
                        "of runs side by side, and print its path.", epilog="example:\n  latentlab report runs/vae")
    rp.add_argument("path", metavar="RUN_DIR_OR_DIR", nargs="+",
                    help="a run directory, a folder of them (compare, sweep), or several run directories side by side")
    rp.add_argument("--out", metavar="DIR", default=None,
                    help="where to write index.html (required for several runs; default: the run directory or folder)")
    rp.set_defaults(handler=commands.cmd_report)

    dm = sub.add_parser("demo", parents=[common], help=COMMAND_HELP["demo"], formatter_class=fmt,
                        description="Fit PCA, a linear AE, a deep AE and a VAE on the embedded digits, print a comparison "
                        "table and write the report. Takes about a minute on two CPU cores.",
                        epilog="example:\n  latentlab demo --out demo && xdg-open demo/index.html")
    dm.add_argument("--out", default=inspect.signature(api.demo).parameters["out"].default, metavar="DIR",
                    help="folder for the runs and the report (default: %(default)s)")
    dm.add_argument("--epochs", type=int, default=None, metavar="N",
                    help="at most N epochs for the networks, for a quicker look (default: the estimators' budget; they stop when converged)")
    dm.set_defaults(handler=commands.cmd_demo)


#: Each builder and the commands it adds (in the order of `latentlab --help`).
_BUILDERS = [
    (_add_fit, ("fit",)),
    (_add_evaluate, ("evaluate",)),
    (_add_use_commands, ("encode", "reconstruct", "sample", "interpolate")),
    (_add_export, ("export",)),
    (_add_explore, ("explore",)),
    (_add_compare, ("compare",)),
    (_add_sweep, ("sweep",)),
    (_add_report_and_demo, ("report", "demo")),
]
