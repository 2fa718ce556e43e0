"""Your own networks, described so that a saved model can name them without pickling them.

A network an estimator takes (``encoder=``, ``decoder=``, ``likelihood=``) is one of:

- a ``torch.nn.Module`` instance: used as given (copied at ``fit``). The saved model records only
  its class, and :func:`latentlab.load` needs the network handed back
  (``load(path, encoder=MyEncoder(), decoder=MyDecoder())``), its weights then come from the file;
- a :class:`ModuleSpec`, ``ModuleSpec("mypkg.nets:Encoder", width=32)``, or its text form
  ``"mypkg.nets:Encoder(width=32)"`` (what the command line's ``--encoder`` takes): an importable
  ``module:Class`` (or ``module:function`` returning a module) with keyword arguments that JSON
  holds. The saved model records the spec, and ``load`` rebuilds the network from it, but only
  when asked to with ``trust_code=True`` (``--trust-code`` on the command line), since importing a
  module runs its code.

No pickle either way: the weights are in ``model.safetensors``, the description in ``config.json``.

Example
-------
>>> spec = ModuleSpec.parse("torch.nn:Linear(in_features=4, out_features=2)")
>>> spec.target, spec.kwargs
('torch.nn:Linear', {'in_features': 4, 'out_features': 2})
>>> spec.build()
Linear(in_features=4, out_features=2, bias=True)
>>> ModuleSpec.from_record(spec.to_record()) == spec
True
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from typing import Any, Mapping

from torch import nn

from ..errors import ConfigError

__all__ = ["ModuleSpec", "network_record", "is_network_record", "describe_network", "INSTANCE", "SPEC"]

_TARGET = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
#: The ``kind`` of a saved network record: an instance to hand back at load, or a spec to rebuild.
INSTANCE, SPEC = "instance", "spec"


class ModuleSpec:
    """How to build a network: ``target`` ("package.module:Name") called with ``kwargs``.

    Parameters
    ----------
    target : str
        ``"package.module:Name"``, where ``Name`` (a class or a function, dotted for a nested one)
        returns a ``torch.nn.Module`` when called with ``kwargs``.
    **kwargs :
        Keyword arguments, each a value JSON holds (numbers, strings, booleans, None, lists,
        dicts). They are stored as JSON gives them back (tuples become lists), so that a network
        built at ``fit`` and one rebuilt by ``load`` get the same arguments.

    Example
    -------
    >>> ModuleSpec("torch.nn:Linear", in_features=3, out_features=1).build().weight.shape
    torch.Size([1, 3])
    """

    def __init__(self, target: str, **kwargs: Any):
        if not isinstance(target, str) or not _TARGET.match(target):
            raise ConfigError(
                f"a network spec names an importable 'package.module:Name', e.g. 'mypkg.nets:Encoder'; got {target!r}."
            )
        try:
            self.kwargs: dict[str, Any] = json.loads(json.dumps(kwargs, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"the arguments of {target} must be values JSON holds (numbers, strings, booleans, None, lists, "
                f"dicts), so that a saved model can record them; {exc}."
            ) from None
        self.target = target

    def __repr__(self) -> str:
        return f"ModuleSpec({self.target!r}" + "".join(f", {k}={v!r}" for k, v in self.kwargs.items()) + ")"

    def __eq__(self, other) -> bool:
        return isinstance(other, ModuleSpec) and (self.target, self.kwargs) == (other.target, other.kwargs)

    __hash__ = None  # the kwargs are a dict

    def text(self) -> str:
        """The text form, ``"package.module:Name(k=v, ...)"`` (what :meth:`parse` reads)."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.target}({args})" if args else self.target

    @classmethod
    def parse(cls, text: str) -> "ModuleSpec":
        """``"package.module:Name"`` or ``"package.module:Name(k=v, ...)"``, whose values are Python
        literals (numbers, strings, True/False/None, lists, tuples, dicts); nothing is evaluated."""
        text = str(text).strip()
        head, paren, rest = text.partition("(")
        head = head.strip()
        if not paren:
            return cls(head)
        try:
            call = ast.parse(f"f({rest}", mode="eval").body
            if not isinstance(call, ast.Call) or call.args or any(k.arg is None for k in call.keywords):
                raise ValueError("only keyword arguments, k=v, are accepted")
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        except (SyntaxError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the network spec {text!r} ({exc}); write 'package.module:Name' or "
                "'package.module:Name(width=32, sizes=[64, 32])' with literal keyword arguments."
            ) from None
        return cls(head, **kwargs)

    def resolve(self):
        """The callable ``target`` names (imports its module: this runs that module's code)."""
        module_name, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"cannot import {module_name!r} for the network {self.target} ({exc}); install it or "
                              "put it on the Python path (PYTHONPATH).") from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ConfigError(f"{module_name} has no {attr!r}, which the network spec {self.target} names.")
            obj = getattr(obj, part)
        if not callable(obj):
            raise ConfigError(f"{self.target} is not a class or a function, so it cannot build a network.")
        return obj

    def instantiate(self) -> Any:
        """Import ``target`` and call it with ``kwargs``; whatever it returns (see :meth:`build`)."""
        fn = self.resolve()
        try:
            return fn(**self.kwargs)
        except TypeError as exc:
            raise ConfigError(f"{self.text()} failed: {exc}; check the arguments against {self.target}'s signature.") from None

    def build(self) -> nn.Module:
        """Import ``target`` and call it with ``kwargs``; the module it returns."""
        module = self.instantiate()
        if not isinstance(module, nn.Module):
            raise ConfigError(f"{self.text()} returned a {type(module).__name__}, not a torch.nn.Module.")
        return module

    def to_record(self) -> dict[str, Any]:
        """What ``config.json`` and ``run.json`` hold for it."""
        return {"network": SPEC, "target": self.target, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "ModuleSpec":
        if not is_network_record(record) or record["network"] != SPEC:
            raise ConfigError(f"not a network spec record: {record!r}.")
        kwargs = record.get("kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise ConfigError(f"the arguments of the network {record.get('target')!r} are not a JSON object.")
        return cls(record.get("target"), **kwargs)


def is_network_record(value: Any) -> bool:
    """Whether ``value`` is what :func:`network_record` writes (a dict with a ``network`` kind)."""
    return isinstance(value, Mapping) and value.get("network") in (INSTANCE, SPEC)


def describe_network(value: nn.Module) -> str:
    """``package.module.Class`` of a network instance."""
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def network_record(value: Any) -> Any:
    """A network parameter as JSON: an instance becomes ``{"network": "instance", "class": ...}``
    (to be handed back at load), a :class:`ModuleSpec` its record; anything else is returned
    unchanged (None, a likelihood's name, a spec's text)."""
    if isinstance(value, ModuleSpec):
        return value.to_record()
    if isinstance(value, nn.Module):
        return {"network": INSTANCE, "class": describe_network(value)}
    return value
