"""The one estimator contract shared by every classifier.

:class:`Estimator` gives both :class:`~.micrograph.fewshot.FewShotClassifier`
and :class:`~.ebsd.classifier.EBSDClassifier` the scikit-learn conventions
(and any future estimator gets them by subclassing):

- **Parameters** are the arguments of ``__init__``, stored unchanged under the
  same names; :meth:`~Estimator.get_params` (``deep=True``) and
  :meth:`~Estimator.set_params` read them from the signature, so
  ``sklearn.base.clone`` works.
- **Fitted state** lives in attributes ending in ``_``, assigned only when
  ``fit`` has finished (a cancelled or failed fit leaves the previous state).
  :func:`check_is_fitted` is the one fitted check, with one message style;
  ``__sklearn_is_fitted__`` (scikit-learn's fitted protocol) and ``is_fitted`` answer it.
- **Randomness** comes from the ``seed`` parameter through per-call
  generators (:meth:`~Estimator._numpy_rng`, :func:`torch_generator`); torch's
  global generator is only used inside :func:`isolated_torch_rng`, which
  restores it, so fitting never changes the caller's random state.
- **Model files** are one template: :meth:`~Estimator.save` writes the
  parameters plus each class's :meth:`~Estimator._get_state`;
  :meth:`~Estimator.load` (and :func:`load_estimator` for any kind) reads the
  file once and rebuilds the estimator with :meth:`~Estimator._set_state`.
  :data:`MODEL_KINDS` maps the kind recorded in a file to its class.
- **Long calls** take ``progress`` and ``cancel`` as keyword-only arguments.

Prediction naming
-----------------
``predict`` and ``predict_proba`` take one *sample unit* of each pipeline:
for micrographs that is one image with its pixel size (an image's
probabilities are a mean over its crops), for EBSD a stack of patterns
``(N, h, w)`` (each pattern is a sample, as rows are in scikit-learn). The
micrograph estimator adds :meth:`predict_images` / :meth:`predict_proba_images`
for a list of images, returning one row per image like the EBSD methods.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
from pathlib import Path
from typing import Any, ClassVar, Iterator, Optional, Union

import numpy as np
import torch

from .errors import MicrostructureError, ModelFileError, NotFittedError

#: Model-file kind -> ``"module:Class"`` of the estimator that reads it.
MODEL_KINDS: dict[str, str] = {
    "micrograph": "napari_microstructure.core.micrograph.fewshot:FewShotClassifier",
    "ebsd": "napari_microstructure.core.ebsd.classifier:EBSDClassifier",
    "ebsd-bands": "napari_microstructure.core.ebsd.bandclassifier:BandProfileClassifier",
}


def estimator_class(kind: str) -> type["Estimator"]:
    """The estimator class that reads model files of ``kind``."""
    if kind not in MODEL_KINDS:
        raise ModelFileError(
            f"the model file holds a model of unknown kind {kind!r}; this version of "
            f"napari-microstructure reads {', '.join(repr(k) for k in MODEL_KINDS)} models: update it"
        )
    module, name = MODEL_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def check_is_fitted(estimator: Any, what: str = "") -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` is fitted.

    Parameters
    ----------
    estimator : Estimator
    what : str
        What the caller wanted to do, e.g. ``"to explain"`` (added to the message).
    """
    fitted = getattr(estimator, "__sklearn_is_fitted__", None)
    if fitted is not None and fitted():
        return
    name = type(estimator).__name__
    hint = getattr(type(estimator), "_fit_call", "fit(...)")
    purpose = f", {what}" if what else ""
    raise NotFittedError(
        f"this {name} is not fitted yet{purpose}; call {hint} or {name}.load(path) first"
    )


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with torch's intra-op thread count set to ``n``, then restore it.

    For small networks whose products are too small to share: with two threads on
    two cores, such a training slowed six-fold beside another busy job (120 s against
    21 s with one thread), and gained 12 % alone (19.1 s against 21.6 s; the band-profile
    classifier's fine-tuning on 400 patterns per class, 2026-11-30).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def isolated_torch_rng(seed: Optional[int], device: Optional[torch.device] = None,
                       numpy_global: bool = False) -> Iterator[None]:
    """Run a block with torch's global generator seeded, then restore it.

    Module constructors (weight initialisation) and ``nn.Dropout`` draw from
    torch's global generator and take no generator argument. Inside this
    block that generator (and that of ``device`` when it is a CUDA device) is
    seeded with ``seed``; afterwards the caller's state is back as it was.
    ``seed=None`` leaves the generators unseeded (a random run) but still
    restores them. ``numpy_global`` does the same for numpy's legacy global
    generator (captum draws from it).
    """
    cuda = [device.index or 0] if device is not None and device.type == "cuda" else []
    numpy_state = np.random.get_state() if numpy_global else None
    try:
        with torch.random.fork_rng(devices=cuda):
            if seed is not None:
                torch.random.default_generator.manual_seed(int(seed))
                for index in cuda:
                    torch.cuda.default_generators[index].manual_seed(int(seed))
                if numpy_global:
                    np.random.seed(int(seed) % 2**32)
            yield
    finally:
        if numpy_state is not None:
            np.random.set_state(numpy_state)


def torch_generator(seed: Optional[int], device: Union[str, torch.device] = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (a random seed when None)."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


class Estimator:
    """Base of every napari-microstructure estimator (see the module notes).

    Subclasses set :attr:`kind` (the model-file kind, a key of
    :data:`MODEL_KINDS`), :attr:`_fitted_attribute` (an attribute that exists
    only once fitted) and :attr:`_fit_call` (how to fit, for messages), and
    implement :meth:`_get_state` and :meth:`_set_state`.
    """

    kind: ClassVar[str] = ""
    _fitted_attribute: ClassVar[str] = ""
    _fit_call: ClassVar[str] = "fit(...)"

    # -------------------------------------------------------------- parameters
    @classmethod
    def _get_param_names(cls) -> list[str]:
        """Parameter names from the ``__init__`` signature, in order."""
        signature = inspect.signature(cls.__init__)
        names = []
        for p in list(signature.parameters.values())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ must not take *args or **kwargs")
            names.append(p.name)
        return names

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """Default parameter values, from the ``__init__`` signature (for widgets and the command line)."""
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        return {p.name: p.default for p in parameters}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters by name (scikit-learn style).

        Parameters
        ----------
        deep : bool
            Also return the parameters of parameters that are estimators
            themselves, as ``"<name>__<parameter>"``.
        """
        out: dict[str, Any] = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params: Any) -> "Estimator":
        """Set constructor parameters by name; returns ``self``."""
        valid = self._get_param_names()
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise MicrostructureError(
                    f"{type(self).__name__} has no parameter {name!r}; valid parameters: {', '.join(valid)}"
                )
            if sub:
                getattr(self, name).set_params(**{sub: value})
            else:
                setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = self.default_params()
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name)
            try:
                same = bool(value == defaults[name])
            except Exception:  # arrays and other objects without a plain ==
                same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    # ----------------------------------------------------------------- fitted
    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, self._fitted_attribute, None) is not None

    @property
    def is_fitted(self) -> bool:
        """True once :meth:`fit` has finished or the estimator was loaded."""
        return self.__sklearn_is_fitted__()

    # -------------------------------------------------------------- randomness
    def _numpy_rng(self, offset: int = 0) -> np.random.Generator:
        """A numpy generator from ``seed`` (+ ``offset`` for independent streams)."""
        seed = getattr(self, "seed", None)
        return np.random.default_rng(None if seed is None else int(seed) + offset)

    # ------------------------------------------------------------------ files
    def _params_to_json(self) -> dict[str, Any]:
        """Parameters as JSON values (override to encode richer ones)."""
        return self.get_params(deep=False)

    @classmethod
    def _params_from_json(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Inverse of :meth:`_params_to_json`."""
        return dict(params)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Fitted state as (JSON metadata, tensors or arrays by name)."""
        raise NotImplementedError

    def _set_state(self, metadata: dict[str, Any], tensors: dict[str, torch.Tensor],
                   device: torch.device) -> None:
        """Restore the fitted state written by :meth:`_get_state`."""
        raise NotImplementedError

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write parameters, weights and fitted state to one file (no pickle).

        Returns
        -------
        pathlib.Path
            The file written (see :mod:`~.nn.modelio`).
        """
        from .nn.modelio import save_model_file

        check_is_fitted(self, "to save")
        metadata, tensors = self._get_state()
        metadata = {"params": self._params_to_json(), **metadata}
        return save_model_file(path, self.kind, metadata, tensors)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], device: str = "auto") -> "Estimator":
        """Read a model file written by :meth:`save` (no code is executed).

        Parameters
        ----------
        path : path-like
        device : str
            ``"auto"``, ``"cpu"``, ``"cuda"``...: where the networks run.
        """
        from .nn.modelio import load_model_file

        metadata, tensors = load_model_file(path, cls.kind)
        return cls._from_file(path, metadata, tensors, device)

    @classmethod
    def _from_file(cls, path: Union[str, os.PathLike], metadata: dict[str, Any],
                   tensors: dict[str, torch.Tensor], device: str) -> "Estimator":
        from .nn.device import select_device

        try:
            params = cls._params_from_json(dict(metadata["params"]))
            params["device"] = device
            obj = cls(**params)
            obj._set_state(metadata, tensors, select_device(device))
        except (KeyError, TypeError, RuntimeError, ValueError, IndexError, AttributeError) as exc:
            if isinstance(exc, MicrostructureError):
                raise
            what = f"missing {exc}" if isinstance(exc, KeyError) else f"{exc.__class__.__name__}: {exc}"
            what = " ".join(what.split())
            raise ModelFileError(
                f"{str(path)!r} is damaged or incomplete ({what}); re-save the model or train it again"
            ) from exc
        return obj


def load_estimator(path: Union[str, os.PathLike], device: str = "auto") -> Estimator:
    """Read any model file, once, and return the estimator of its kind."""
    from .nn.modelio import read_model_file

    kind, metadata, tensors = read_model_file(path)
    return estimator_class(kind)._from_file(path, metadata, tensors, device)
