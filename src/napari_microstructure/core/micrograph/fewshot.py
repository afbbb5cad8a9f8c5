"""Few-shot micrograph classification with open-set rejection.

:class:`FewShotClassifier` learns low-dimensional descriptors of crops taken at
several physical scales (triplet or Siamese contrastive loss, or a
cross-entropy head), fits one Gaussian per class on them, and calls a crop
"none of these" when its log-likelihood falls below a threshold calibrated on
held-out crops (Larmuseau et al. 2020). An image's probabilities are the mean
over many augmented random crops.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .augment import AugmentConfig, augment_photometric
from .crops import CropSource, build_pyramid, draw_centres, feasible_fov, log_uniform, random_geometry, sample_crops
from ..nn.device import autocast, select_device
from ..errors import MicrostructureError, NotFittedError
from .images import as_grey_image, as_image_list, as_pixel_sizes, check_mask, check_pixel_size, normalise_intensity
from ..nn.losses import LOSSES, MINING, contrastive_loss, triplet_loss
from ..nn.modelio import load_model_file, save_model_file, split_prefix, with_prefix
from ..nn.networks import DescriptorNet
from .openset import SCORERS, OpenSetMixture, OpenSetScorer, cross_validated_novelty, make_scorer, scorer_from_state
from ..nn.progress import CancelToken, ProgressCallback, check_cancel, report
from ..nn.training import TrainingConfig, TrainingHistory, train_loop

NONE_CLASS = "none"

#: Crops with fewer labelled pixels than this per class are refused (scribble masks).
MIN_LABELLED_PIXELS = 10
#: What the open-set scorer measures novelty on (see FewShotClassifier.open_set_input).
SCORER_FEATURES = ("imagenet", "backbone", "descriptor")
#: An image whose pixel size is more than this factor outside the training images' range is
#: beyond what the model has seen: it gets a warning and its crops count as "none".
MAGNIFICATION_TOLERANCE = 1.5
#: Pixel sizes above this many micrometres, or this factor away from every training image,
#: are almost certainly wrong (e.g. a TIFF's dots-per-inch read as a pixel size).
IMPLAUSIBLE_PIXEL_SIZE_UM = 50.0
IMPLAUSIBLE_FACTOR = 1000.0


@dataclasses.dataclass
class _Prepared:
    sources: list[CropSource]
    val_sources: list[CropSource]
    classes: list[str]
    held_out_images: bool


class FewShotClassifier:
    """Few-shot, open-set classifier of micrographs.

    Parameters
    ----------
    backbone : {"compact", "efficientnet-lite0"}
        ``"compact"``: a small CNN trained from scratch (fast on a CPU).
        ``"efficientnet-lite0"``: transfer learning from ImageNet weights.
    loss : {"triplet", "contrastive", "cross-entropy"}
        Metric learning (triplet, Siamese contrastive) or a classifier head.
    embedding_dim : int
        Descriptor dimension (2 as in Larmuseau et al.; more for many classes).
    input_size : int
        Side of the network input in pixels; every crop is resampled to it.
    fov_um : (float, float) or None
        Range of crop fields of view in micrometres. None: per image, from
        native resolution (``input_size`` pixels) to the shorter image side.
    pretrained : bool
        Start from ImageNet weights (EfficientNet-Lite0 only).
    use_magnification : bool
        Feed the crop's resolution (log10 pixels per micrometre) to the network.
    augment : bool, dict or AugmentConfig
        Training augmentation (see :class:`~.augment.AugmentConfig`).
    margin : float
        Margin alpha of the triplet and contrastive losses.
    mining : {"batch-hard", "semi-hard", "all"}
        Triplet mining.
    max_epochs, steps_per_epoch, batch_size : int
        An epoch is ``steps_per_epoch`` balanced batches of ``batch_size`` crops.
    learning_rate, weight_decay, patience, min_delta, validation_fraction
        See :class:`~.training.TrainingConfig`.
    n_crops : int
        Random crops per image in :meth:`predict_proba`.
    rejection_quantile : float
        Share of held-out known-class crops that the threshold rejects
        (default 0.1; see :mod:`.openset` for why).
    scorer : {"knn", "mahalanobis", "energy", "gmm"}
        Open-set scorer (:mod:`.openset`): k-nearest-neighbour distance, shared-
        covariance Mahalanobis distance, energy of the classifier head
        (cross-entropy only), or the paper's per-class Gaussian mixture.
    scorer_features : {"imagenet", "backbone", "descriptor"}
        What the scorer measures novelty on: frozen ImageNet features of each
        crop (:mod:`.imagenet_features`), the trained backbone's pooled
        features, or the descriptors alone. The Gaussian
        mixture (``"gmm"``, and ``mixture_`` for the explanations) always uses
        the descriptors alone.
    calibration_crops : int
        Crops per image described after training for the scorer and its
        threshold (at least 8).
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``...
    seed : int or None
        Seeded runs on the CPU give the same model twice.

    Attributes
    ----------
    classes_ : list of str
        Trained class names; probabilities follow this order, then "none".
    history_ : TrainingHistory
    mixture_ : OpenSetMixture
        Per-class Gaussians on the descriptors (the explanations draw it).
    scorer_ : OpenSetScorer
        Decides class probabilities and "none" per crop (``mixture_`` itself
        when ``scorer="gmm"``).
    pixel_size_range_um_ : (float, float)
        Smallest and largest pixel size of the training images.
    fov_range_um_ : (float, float)
        Fields of view used in training; prediction crops stay inside it.
    map_fov_um_ : float
        Field of view used for probability maps (median of training crops).
    """

    kind = "micrograph"

    def __init__(
        self,
        backbone: str = "compact",
        loss: str = "triplet",
        embedding_dim: int = 16,
        input_size: int = 200,
        fov_um: Optional[tuple[float, float]] = None,
        pretrained: bool = True,
        use_magnification: bool = True,
        augment: Union[bool, dict, AugmentConfig] = True,
        margin: float = 1.0,
        mining: str = "semi-hard",
        max_epochs: int = 40,
        steps_per_epoch: int = 16,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        patience: int = 8,
        min_delta: float = 1e-3,
        validation_fraction: float = 0.2,
        n_crops: int = 256,
        rejection_quantile: float = 0.1,
        scorer: str = "knn",
        scorer_features: str = "imagenet",
        calibration_crops: int = 24,
        device: str = "auto",
        seed: Optional[int] = 0,
    ) -> None:
        self.backbone = backbone
        self.loss = loss
        self.embedding_dim = embedding_dim
        self.input_size = input_size
        self.fov_um = fov_um
        self.pretrained = pretrained
        self.use_magnification = use_magnification
        self.augment = augment
        self.margin = margin
        self.mining = mining
        self.max_epochs = max_epochs
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.min_delta = min_delta
        self.validation_fraction = validation_fraction
        self.n_crops = n_crops
        self.rejection_quantile = rejection_quantile
        self.scorer = scorer
        self.scorer_features = scorer_features
        self.calibration_crops = calibration_crops
        self.device = device
        self.seed = seed

    # ------------------------------------------------------------------ params
    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (scikit-learn style)."""
        names = [
            "backbone", "loss", "embedding_dim", "input_size", "fov_um", "pretrained",
            "use_magnification", "augment", "margin", "mining", "max_epochs", "steps_per_epoch",
            "batch_size", "learning_rate", "weight_decay", "patience", "min_delta",
            "validation_fraction", "n_crops", "rejection_quantile", "scorer", "scorer_features", "calibration_crops",
            "device", "seed",
        ]
        return {n: getattr(self, n) for n in names}

    def __repr__(self) -> str:
        state = f"fitted on {self.classes_}" if self.is_fitted else "not fitted"
        return f"FewShotClassifier(backbone={self.backbone!r}, loss={self.loss!r}, {state})"

    @property
    def is_fitted(self) -> bool:
        return getattr(self, "model_", None) is not None

    def _check_params(self) -> None:
        if self.loss not in LOSSES:
            raise MicrostructureError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.mining not in MINING:
            raise MicrostructureError(f"unknown mining {self.mining!r}; choose one of {', '.join(MINING)}")
        if int(self.embedding_dim) < 1:
            raise MicrostructureError(f"embedding_dim must be at least 1, got {self.embedding_dim}")
        if int(self.input_size) < 32:
            raise MicrostructureError(f"input_size must be at least 32 pixels, got {self.input_size}")
        if self.fov_um is not None:
            lo, hi = (float(v) for v in self.fov_um)
            if not (0 < lo <= hi and math.isfinite(hi)):
                raise MicrostructureError(
                    f"fov_um must be (smallest, largest) positive micrometres, got {self.fov_um}"
                )
        if int(self.n_crops) < 1:
            raise MicrostructureError(f"n_crops must be at least 1, got {self.n_crops}")
        if self.scorer not in SCORERS:
            raise MicrostructureError(f"unknown scorer {self.scorer!r}; choose one of {', '.join(SCORERS)}")
        if self.scorer == "energy" and self.loss != "cross-entropy":
            raise MicrostructureError(
                "scorer='energy' needs a classifier head: use loss='cross-entropy', or choose "
                "scorer='knn' or 'mahalanobis'")
        if self.scorer_features not in SCORER_FEATURES:
            raise MicrostructureError(
                f"unknown scorer_features {self.scorer_features!r}; choose one of {', '.join(SCORER_FEATURES)}")
        if int(self.calibration_crops) < 8:
            raise MicrostructureError(f"calibration_crops must be at least 8, got {self.calibration_crops}")
        if int(self.steps_per_epoch) < 1:
            raise MicrostructureError(f"steps_per_epoch must be at least 1, got {self.steps_per_epoch}")
        AugmentConfig.coerce(self.augment)

    def _training_config(self) -> TrainingConfig:
        cfg = TrainingConfig(
            max_epochs=int(self.max_epochs), learning_rate=float(self.learning_rate),
            weight_decay=float(self.weight_decay), patience=int(self.patience),
            min_delta=float(self.min_delta), batch_size=int(self.batch_size),
            validation_fraction=float(self.validation_fraction), seed=self.seed,
        )
        cfg.validate()
        return cfg

    # ---------------------------------------------------------------- fitting
    def _prepare(
        self, images: Any, labels: Any, pixel_sizes: Any, class_names: Optional[Mapping[int, str]],
        rng: np.random.Generator,
    ) -> _Prepared:
        image_list = as_image_list(images)
        if len(image_list) == 0:
            raise MicrostructureError("no images were given; pass a list of 2-D micrographs")
        label_list = labels if isinstance(labels, (list, tuple)) else (
            [labels] if isinstance(labels, np.ndarray) and labels.ndim == 2 else list(np.asarray(labels).ravel())
        )
        if len(label_list) != len(image_list):
            raise MicrostructureError(
                f"got {len(image_list)} images but {len(label_list)} labels; give one class name "
                "(or one label mask) per image"
            )
        sizes = as_pixel_sizes(pixel_sizes, len(image_list))
        greys = [as_grey_image(im, f"images[{i}]") for i, im in enumerate(image_list)]
        S = int(self.input_size)
        fov = tuple(self.fov_um) if self.fov_um is not None else None
        mask_mode = all(np.ndim(lab) == 2 for lab in label_list)
        if not mask_mode and any(np.ndim(lab) == 2 for lab in label_list):
            raise MicrostructureError(
                "labels mix class names and label masks; give either one class name per image "
                "or one label mask per image"
            )
        if mask_mode:
            masks = [check_mask(m, g.shape, f"labels[{i}]") for i, (m, g) in enumerate(zip(label_list, greys))]
            values = sorted({int(v) for m in masks for v in np.unique(m) if v > 0})
            if not values:
                raise MicrostructureError(
                    "the label masks are empty; paint at least two classes (label values 1, 2, ...)"
                )
            names = {int(k): str(v) for k, v in (class_names or {}).items()}
            classes = [names.get(v, str(v)) for v in values]
            value_to_class = {v: k for k, v in enumerate(values)}
        else:
            names_list = [str(lab) for lab in label_list]
            if any(n.strip() == "" for n in names_list):
                raise MicrostructureError("a class name is empty; name every image's class")
            classes = sorted(set(names_list))
        if len(classes) < 2:
            raise MicrostructureError(
                f"only one class ({classes[0]!r}) was given; few-shot training needs at least two "
                "classes (images of anything outside them are then reported as 'none')"
            )
        if NONE_CLASS in classes:
            raise MicrostructureError(
                f"{NONE_CLASS!r} is reserved for 'none of these'; rename that class"
            )
        sources: list[CropSource] = []
        val_sources: list[CropSource] = []
        held_out = False
        if mask_mode:
            for i, (g, m, p) in enumerate(zip(greys, masks, sizes)):
                valid = np.isfinite(g)
                coords = {}
                for v, k in value_to_class.items():
                    yx = np.argwhere((m == v) & valid)
                    if len(yx) > 200_000:
                        yx = yx[rng.choice(len(yx), 200_000, replace=False)]
                    if len(yx):
                        coords[k] = yx.astype(np.float64)
                if not coords:
                    continue
                rng_fov = feasible_fov(g.shape, p, S, fov, f"images[{i}]")
                sources.append(CropSource(build_pyramid(normalise_intensity(g)), p, rng_fov, None, coords))
            for k, name in enumerate(classes):
                n_px = sum(len(s.mask_coords.get(k, ())) for s in sources)
                if n_px < MIN_LABELLED_PIXELS:
                    raise MicrostructureError(
                        f"class {name!r} has {n_px} labelled pixels; paint at least "
                        f"{MIN_LABELLED_PIXELS} pixels of it"
                    )
            val_sources = sources
        else:
            index = {c: k for k, c in enumerate(classes)}
            per_class: dict[int, list[int]] = {k: [] for k in range(len(classes))}
            for i, n in enumerate(names_list):
                per_class[index[n]].append(i)
            for k, members in per_class.items():
                if len(members) < 2:
                    raise MicrostructureError(
                        f"class {classes[k]!r} has only one image; give at least two images per "
                        "class (one is needed to check the model on data it has not seen)"
                    )
            built = [
                CropSource(build_pyramid(normalise_intensity(g)), p,
                           feasible_fov(g.shape, p, S, fov, f"images[{i}]"), index[names_list[i]])
                for i, (g, p) in enumerate(zip(greys, sizes))
            ]
            frac = float(self.validation_fraction)
            if frac > 0 and all(len(m) >= 3 for m in per_class.values()):
                held_out = True
                val_idx: set[int] = set()
                for members in per_class.values():
                    n_val = max(1, int(round(frac * len(members))))
                    val_idx.update(rng.choice(members, n_val, replace=False).tolist())
                sources = [b for i, b in enumerate(built) if i not in val_idx]
                val_sources = [b for i, b in enumerate(built) if i in val_idx]
            else:
                sources = val_sources = built
        return _Prepared(sources, val_sources, classes, held_out)

    def _draw(
        self, sources: Sequence[CropSource], class_ids: np.ndarray, rng: np.random.Generator,
        augment: AugmentConfig, device: torch.device, gen: Optional[torch.Generator],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Crops ``(n, 1, S, S)`` and log10 resolutions for the requested classes."""
        S = int(self.input_size)
        n = len(class_ids)
        crops = torch.empty((n, 1, S, S), device=device)
        log_ppum = np.zeros(n)
        # choose a source for each crop among those containing its class
        choices = np.zeros(n, dtype=int)
        for k in np.unique(class_ids):
            eligible = [i for i, s in enumerate(sources) if (s.label == k) or (s.mask_coords is not None and k in s.mask_coords)]
            sel = np.nonzero(class_ids == k)[0]
            choices[sel] = rng.choice(eligible, len(sel))
        for i in np.unique(choices):
            sel = np.nonzero(choices == i)[0]
            src = sources[i]
            fov = log_uniform(rng, *src.fov_range_um, len(sel))
            crop_px = fov / src.pixel_size_um
            if src.mask_coords is not None:
                centres = np.concatenate([
                    draw_centres(rng, src, crop_px[j:j + 1], int(class_ids[s])) for j, s in enumerate(sel)
                ]) if len(sel) else np.zeros((0, 2))
            else:
                centres = draw_centres(rng, src, crop_px)
            geometry = None
            if augment.rotation or augment.mirror or augment.warp > 0:
                geometry = random_geometry(rng, len(sel), augment.warp, augment.rotation, augment.mirror)
            crops[torch.as_tensor(sel, device=device)] = sample_crops(
                src.pyramid, centres, crop_px, S, geometry, device
            )
            log_ppum[sel] = np.log10(S / fov)
        crops = augment_photometric(crops, augment, gen)
        return crops, torch.as_tensor(log_ppum, dtype=torch.float32, device=device)

    def _balanced_classes(self, n_classes: int, rng: np.random.Generator) -> np.ndarray:
        per = max(2, int(self.batch_size) // n_classes)
        use = n_classes if n_classes * 2 <= int(self.batch_size) else max(2, int(self.batch_size) // 2)
        chosen = rng.choice(n_classes, use, replace=False) if use < n_classes else np.arange(n_classes)
        return np.repeat(chosen, per)

    def fit(
        self,
        images: Any,
        labels: Any,
        pixel_sizes: Any,
        *,
        class_names: Optional[Mapping[int, str]] = None,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
    ) -> "FewShotClassifier":
        """Train on labelled micrographs.

        Parameters
        ----------
        images : 2-D array or list of 2-D arrays
            Grey micrographs (uint8, uint16 or float; RGB is converted with a
            warning). NaN pixels are ignored.
        labels : list
            Either one class name per image, or one label mask per image (same
            shape; value k > 0 marks class k, 0 is unlabelled).
        pixel_sizes : float or list of float
            Micrometres per pixel, one per image (or one for all).
        class_names : dict, optional
            For label masks: names of the label values, e.g. ``{1: "ferrite"}``.
        progress : callable, optional
            Receives :class:`~.progress.Progress` reports.
        cancel : threading.Event, optional
            Set it to stop; :class:`TrainingCancelled` is raised and a model
            fitted earlier stays as it was.

        Returns
        -------
        self
        """
        self._check_params()
        config = self._training_config()
        if config.seed is not None:
            torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        prep = self._prepare(images, labels, pixel_sizes, class_names, rng)
        self._warn_magnification_leak(prep)
        device = select_device(self.device)
        gen = torch.Generator(device=device)
        gen.manual_seed(int(config.seed) if config.seed is not None else int(rng.integers(2**31)))
        n_classes = len(prep.classes)
        augment = AugmentConfig.coerce(self.augment)
        test_aug = AugmentConfig.test_time() if augment != AugmentConfig.off() else AugmentConfig.off()
        report(progress, "prepare", 0, 1, f"{n_classes} classes, {len(prep.sources)} training images")

        all_sources = list(prep.sources) + [s for s in prep.val_sources if s not in prep.sources]
        los = [math.log10(self.input_size / s.fov_range_um[1]) for s in all_sources]
        his = [math.log10(self.input_size / s.fov_range_um[0]) for s in all_sources]
        mag_center = 0.5 * (min(los) + max(his))
        mag_scale = max(0.5 * (max(his) - min(los)), 0.25)

        model = DescriptorNet(
            self.backbone, int(self.embedding_dim),
            n_classes if self.loss == "cross-entropy" else None,
            bool(self.use_magnification), bool(self.pretrained),
        )
        model.mag_center.fill_(mag_center)
        model.mag_scale.fill_(mag_scale)
        model.to(device)

        def train_batches(epoch: int):
            for _ in range(int(self.steps_per_epoch)):
                ids = self._balanced_classes(n_classes, rng)
                crops, mag = self._draw(prep.sources, ids, rng, augment, device, gen)
                yield crops, mag, torch.as_tensor(ids, device=device)

        val_rng = np.random.default_rng(None if config.seed is None else config.seed + 1)
        n_val_batches = max(2, int(self.steps_per_epoch) // 4)
        val_set = []
        for _ in range(n_val_batches):
            ids = np.repeat(np.arange(n_classes), max(2, int(self.batch_size) // n_classes))
            crops, mag = self._draw(prep.val_sources, ids, val_rng, test_aug, device, gen)
            val_set.append((crops, mag, torch.as_tensor(ids, device=device)))

        def loss_fn(net: DescriptorNet, batch):
            crops, mag, ids = batch
            desc = net(crops, mag)
            if self.loss == "triplet":
                return triplet_loss(desc.float(), ids, float(self.margin), self.mining)
            if self.loss == "contrastive":
                return contrastive_loss(desc.float(), ids, float(self.margin))
            return torch.nn.functional.cross_entropy(net.classifier(desc).float(), ids)

        history = train_loop(model, train_batches, loss_fn, lambda: iter(val_set), config, device,
                             progress, cancel, stage="train")

        report(progress, "calibrate", 0, 2, "describing crops of every image")
        mixture, scorer, calib = self._fit_scorers(model, prep, n_classes, rng, val_rng, test_aug, device,
                                                   gen, cancel)
        check_cancel(cancel)
        report(progress, "calibrate", 2, 2, f"{self.scorer} threshold {scorer.novelty_threshold_:.3g}")

        fovs = np.array([s.fov_range_um for s in all_sources])
        # everything computed: only now replace the fitted state
        self.model_ = model.eval()
        self.device_ = device
        self.classes_ = list(prep.classes)
        self.mixture_ = mixture
        self.scorer_ = scorer
        self.history_ = history
        self.pixel_size_range_um_ = (float(min(s.pixel_size_um for s in all_sources)),
                                     float(max(s.pixel_size_um for s in all_sources)))
        self.fov_range_um_ = (float(fovs[:, 0].min()), float(fovs[:, 1].max()))
        self.map_fov_um_ = float(np.exp(np.median(np.log(np.sqrt(fovs[:, 0] * fovs[:, 1])))))
        self.training_descriptors_ = calib["train"][0][:, : int(self.embedding_dim)].astype(np.float32)
        self.training_labels_ = calib["train"][1].astype(np.int64)
        self.validation_descriptors_ = calib["val"][0][:, : int(self.embedding_dim)].astype(np.float32)
        self.validation_labels_ = calib["val"][1].astype(np.int64)
        self.calibration_set_ = calib["set"]
        self.held_out_images_ = prep.held_out_images
        return self

    def _descriptors_by_image(self, model, sources, rng, augment, device, gen, cancel):
        """``calibration_crops`` descriptors per image: (descriptors, class ids, image index)."""
        n = int(self.calibration_crops)
        out, ids_all, groups = [], [], []
        for i, src in enumerate(sources):
            if src.mask_coords is not None:
                ids = rng.choice(sorted(src.mask_coords), n)
            else:
                ids = np.full(n, int(src.label))
            out.append(self._descriptors_of(model, [src], ids, rng, augment, device, gen, cancel))
            ids_all.append(ids)
            groups.append(np.full(n, i))
        return np.concatenate(out), np.concatenate(ids_all), np.concatenate(groups)

    def open_set_input(self, pooled: torch.Tensor, descriptors: torch.Tensor,
                       crops: Optional[torch.Tensor] = None, for_scorer: bool = True,
                       imagenet: Optional[torch.Tensor] = None) -> np.ndarray:
        """What the open-set scorer reads for each crop, ``(n, D)`` or ``(n, D + C)``.

        The descriptors, followed by the features novelty is measured on:
        ``scorer_features="imagenet"``: frozen ImageNet features of the crops
        (:mod:`.imagenet_features`; from ``crops``, or given as ``imagenet``);
        ``"backbone"``: the trained backbone's spatially pooled features. The
        descriptors only keep what separates the trained classes; the other
        features also what an untrained texture does differently. The Gaussian mixture (``scorer="gmm"``)
        reads the descriptors alone; ``for_scorer=False`` keeps the features anyway
        (the crops described in :meth:`fit`, from which any scorer can be refitted).
        """
        d = descriptors.float().cpu().numpy()
        if self.scorer_features == "descriptor" or (for_scorer and self.scorer == "gmm"):
            return d
        if self.scorer_features == "imagenet":
            if imagenet is None:
                from .imagenet_features import crop_features

                imagenet = crop_features(crops)
            return np.concatenate([d, imagenet.float().cpu().numpy()], axis=1)
        return np.concatenate([d, pooled.float().cpu().numpy()], axis=1)

    def _head(self, model):
        if model.classifier is None:
            return None
        return (model.classifier.weight.detach().cpu().double().numpy(),
                model.classifier.bias.detach().cpu().double().numpy())

    def _fit_scorers(self, model, prep, n_classes, rng, val_rng, augment, device, gen, cancel):
        """The mixture and the open-set scorer, threshold cross-validated over images.

        Crops of held-out images (never seen in training) are scored with their own
        image left out of the scorer's reference (:func:`.openset.cross_validated_novelty`);
        the threshold is a quantile of those scores, and the scorer is then refitted
        on every image. Without held-out images (scribbles, or fewer than 3 images
        per class) a second draw of crops of the training images is scored, still
        leaving each image out, and the threshold is looser than it should be.
        """
        train = self._descriptors_by_image(model, prep.sources, rng, augment, device, gen, cancel)
        if prep.held_out_images:
            val = self._descriptors_by_image(model, prep.val_sources, val_rng, augment, device, gen, cancel)
            val_groups = val[2] + len(prep.sources)
        else:
            val = self._descriptors_by_image(model, prep.sources, val_rng, augment, device, gen, cancel)
            val_groups = val[2]
        x = np.concatenate([train[0], val[0]])
        y = np.concatenate([train[1], val[1]])
        groups = np.concatenate([train[2], val_groups])
        score = np.r_[np.zeros(len(train[0]), bool), np.ones(len(val[0]), bool)]
        if len(np.unique(groups)) < 2:
            warnings.warn(
                "one labelled image: the 'none of these' threshold is calibrated on other crops of the "
                "training image itself, not cross-validated over images, and rejects too little; label a "
                "second image (3 per class keep whole images for checking)", UserWarning, stacklevel=3)
        calib = {"train": train, "val": val, "set": (x, y, groups, score, prep.held_out_images, n_classes)}
        D = int(self.embedding_dim)
        mixture = OpenSetMixture(rejection_quantile=float(self.rejection_quantile))
        mixture.calibrate_novelty(cross_validated_novelty(mixture, x[:, :D], y, groups, score, n_classes))
        mixture.fit(x[:, :D], y, n_classes)
        scorer, calib["novelty"] = self._calibrated_scorer(self.scorer, calib["set"], self._head(model), mixture)
        return mixture, scorer, calib

    def _calibrated_scorer(self, name, calibration_set, head, mixture):
        """A scorer fitted on every image, its threshold cross-validated over images."""
        x, y, groups, score, held_out, n_classes = calibration_set
        if name == "gmm":
            return mixture, None
        if self.scorer_features == "descriptor":
            x = x[:, : int(self.embedding_dim)]
        split = int(self.embedding_dim) if self.scorer_features != "descriptor" else 0
        # metric-learning descriptors are positions; cross-entropy and backbone features directions
        normalise = split > 0 or self.loss == "cross-entropy"
        scorer = make_scorer(name, float(self.rejection_quantile), head, normalise=normalise, split=split)
        if (self.scorer_features == "imagenet" and name in ("knn", "mahalanobis")
                and len(np.unique(groups)) >= 2):
            # the frozen features never saw any of these images: every image can be left out
            # in turn (the network's own features are only honest on the held-out images)
            score = np.ones(len(x), bool)
            held_out = True
        novelty = cross_validated_novelty(scorer, x, y, groups, score, n_classes)
        scorer.calibrate_novelty(novelty)
        # without held-out images the second draw repeats the training images: keep one draw
        scorer.fit(x if held_out else x[~score], y if held_out else y[~score], n_classes)
        return scorer, novelty

    def refit_scorer(self, scorer: str, rejection_quantile: Optional[float] = None) -> "FewShotClassifier":
        """Switch the open-set scorer of a freshly fitted model without retraining the network.

        Uses the crops described at the end of :meth:`fit` (not stored in model
        files). ``rejection_quantile`` (optional) replaces the parameter.
        """
        self._check_fitted()
        if getattr(self, "calibration_set_", None) is None:
            raise MicrostructureError(
                "refit_scorer needs the crops described during fit, which model files do not keep; "
                "fit the model again with the scorer you want")
        if rejection_quantile is not None:
            self.rejection_quantile = rejection_quantile
        old = self.scorer
        self.scorer = scorer
        try:
            self._check_params()
        except MicrostructureError:
            self.scorer = old
            raise
        new, novelty = self._calibrated_scorer(scorer, self.calibration_set_, self._head(self.model_), self.mixture_)
        self.scorer_ = new
        if novelty is not None:
            self.calibration_novelty_ = novelty.astype(np.float32)
        return self

    # ------------------------------------------------------- magnification
    @staticmethod
    def _warn_magnification_leak(prep: _Prepared) -> None:
        """Warn when one class's images share one pixel size while the others' vary.

        The network sees each crop's resolution, so it could then recognise the
        magnification instead of the structure.
        """
        sources = list(prep.sources) + [s for s in prep.val_sources if s not in prep.sources]
        per_class: dict[int, list[float]] = {}
        for src in sources:
            if src.label is not None:
                per_class.setdefault(int(src.label), []).append(src.pixel_size_um)
        if len(per_class) < 2:
            return
        spread = {k: max(v) / min(v) for k, v in per_class.items()}
        for k, sizes in per_class.items():
            others = [spread[j] for j in per_class if j != k]
            if len(sizes) >= 2 and spread[k] < 1.01 and max(others) > 1.25:
                warnings.warn(
                    f"every image of class {prep.classes[k]!r} has pixel size {sizes[0]:.4g} um while the "
                    "other classes' pixel sizes vary: the model can learn the magnification instead of the "
                    "structure. Add images of this class at other magnifications, or check the pixel sizes",
                    UserWarning, stacklevel=3)

    def check_magnification(self, pixel_size_um: float) -> bool:
        """Whether the model has seen images of this pixel size; warns when not.

        Returns False (and warns) when ``pixel_size_um`` lies more than
        :data:`MAGNIFICATION_TOLERANCE` times outside the training images' range:
        the caller then counts the image's crops as "none". Implausible pixel
        sizes (over :data:`IMPLAUSIBLE_PIXEL_SIZE_UM` um, or
        :data:`IMPLAUSIBLE_FACTOR` times away from the training images) get a
        warning of their own.
        """
        self._check_fitted()
        p = float(pixel_size_um)
        lo, hi = getattr(self, "pixel_size_range_um_", (0.0, np.inf))
        if p > IMPLAUSIBLE_PIXEL_SIZE_UM or (lo > 0 and (p > hi * IMPLAUSIBLE_FACTOR or p < lo / IMPLAUSIBLE_FACTOR)):
            warnings.warn(
                f"implausible pixel size {p:.4g} um per pixel (the training images had {lo:.3g}-{hi:.3g} um); "
                "check it: a TIFF's dots-per-inch resolution is often read as a pixel size. Give the "
                "micrometres per pixel of the image", UserWarning, stacklevel=3)
        if lo > 0 and not (lo / MAGNIFICATION_TOLERANCE <= p <= hi * MAGNIFICATION_TOLERANCE):
            warnings.warn(
                f"pixel size {p:.4g} um is outside the range the model was trained on ({lo:.3g}-{hi:.3g} um "
                f"per pixel, tolerance x{MAGNIFICATION_TOLERANCE:g}); its crops count as 'none'. Train with "
                "images at this magnification, or check the pixel size", UserWarning, stacklevel=3)
            return False
        return True

    def _descriptors_of(self, model, sources, ids, rng, augment, device, gen, cancel) -> np.ndarray:
        out = []
        model.eval()
        for start in range(0, len(ids), 64):
            check_cancel(cancel)
            crops, mag = self._draw(sources, ids[start:start + 64], rng, augment, device, gen)
            with torch.inference_mode(), autocast(device):
                pooled = model.feature_map(crops).mean(dim=(2, 3))
                out.append(self.open_set_input(pooled, model.head_from_pooled(pooled, mag), crops, for_scorer=False))
        return np.concatenate(out)

    # ------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                "this FewShotClassifier is not fitted yet; call fit(images, labels, pixel_sizes) "
                "or FewShotClassifier.load(path) first"
            )

    def _image_source(self, image: Any, pixel_size: Any) -> CropSource:
        grey = as_grey_image(image)
        p = check_pixel_size(pixel_size)
        lo, hi = self.fov_range_um_
        side_um = min(grey.shape) * p
        if lo > side_um * (1 + 1e-6):
            raise MicrostructureError(
                f"the image covers {side_um:.3g} um on its shorter side ({min(grey.shape)} pixels of "
                f"{p:.3g} um), less than the smallest crop the model was trained on ({lo:.3g} um); "
                "use a larger image, or check its pixel size"
            )
        hi = min(hi, side_um)
        if self.fov_um is None:
            # as in training (crops.feasible_fov): no crop finer than the image's own pixels
            lo = min(max(lo, int(self.input_size) * p), hi)
        return CropSource(build_pyramid(normalise_intensity(grey)), p, (lo, hi), 0)

    def crop_predictions(
        self, image: Any, pixel_size: Any, n_crops: Optional[int] = None, augment: bool = True,
        seed: Optional[int] = 0, cancel: Optional[CancelToken] = None,
        progress: Optional[ProgressCallback] = None,
    ) -> dict[str, np.ndarray]:
        """Descriptors and probabilities of random crops of one image.

        Returns
        -------
        dict
            ``descriptors`` (n, D), ``probabilities`` (n, n_classes + 1),
            ``log_likelihood`` (n,), ``fov_um`` (n,).
        """
        self._check_fitted()
        src = self._image_source(image, pixel_size)
        n = int(n_crops or self.n_crops)
        rng = np.random.default_rng(seed)
        gen = torch.Generator(device=self.device_)
        gen.manual_seed(0 if seed is None else int(seed))
        aug = AugmentConfig.test_time() if augment else AugmentConfig.off()
        S = int(self.input_size)
        desc = []
        fovs = []
        for start in range(0, n, 128):
            check_cancel(cancel)
            report(progress, "predict", start, n, f"crop {start} of {n}")
            m = min(128, n - start)
            fov = log_uniform(rng, *src.fov_range_um, m)
            crop_px = fov / src.pixel_size_um
            centres = draw_centres(rng, src, crop_px)
            geometry = random_geometry(rng, m, 0.0) if augment else None
            crops = sample_crops(src.pyramid, centres, crop_px, S, geometry, self.device_)
            crops = augment_photometric(crops, aug, gen)
            mag = torch.as_tensor(np.log10(S / fov), dtype=torch.float32, device=self.device_)
            with torch.inference_mode(), autocast(self.device_):
                pooled = self.model_.feature_map(crops).mean(dim=(2, 3))
                desc.append(self.open_set_input(pooled, self.model_.head_from_pooled(pooled, mag), crops))
            fovs.append(fov)
        features = np.concatenate(desc)
        d = features[:, : int(self.embedding_dim)]
        report(progress, "predict", n, n, f"{n} crops")
        probabilities = self.scorer_.crop_probabilities(features)
        if not self.check_magnification(src.pixel_size_um):
            probabilities[:] = 0.0
            probabilities[:, -1] = 1.0
        return {
            "descriptors": d,
            "probabilities": probabilities,
            "log_likelihood": self.mixture_.log_likelihood(d),
            "novelty": self.scorer_.novelty(features),
            "features": features,
            "fov_um": np.concatenate(fovs),
        }

    def predict_proba(self, image: Any, pixel_size: Any, n_crops: Optional[int] = None,
                      seed: Optional[int] = 0, *, progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelToken] = None) -> np.ndarray:
        """Class probabilities of one image: the mean over ``n_crops`` augmented random crops.

        Returns
        -------
        numpy.ndarray
            ``(n_classes + 1,)``: one value per class of :attr:`classes_`, then
            "none of these"; sums to 1. ``progress`` and ``cancel`` work as in :meth:`fit`.
        """
        probs = self.crop_predictions(image, pixel_size, n_crops, True, seed, cancel, progress)["probabilities"]
        return probs.mean(0).astype(np.float64)

    def predict(self, image: Any, pixel_size: Any, n_crops: Optional[int] = None) -> str:
        """The most probable class name of one image, or ``"none"``."""
        p = self.predict_proba(image, pixel_size, n_crops)
        return (self.classes_ + [NONE_CLASS])[int(np.argmax(p))]

    @property
    def labels_(self) -> list[str]:
        """Classes then "none": the order of :meth:`predict_proba`'s output."""
        self._check_fitted()
        return list(self.classes_) + [NONE_CLASS]

    def probability_map(self, image: Any, pixel_size: Any, **kwargs: Any) -> np.ndarray:
        """Per-pixel crop-averaged probabilities ``(n_classes + 1, H, W)``.

        See :func:`napari_microstructure.core.micrograph.probmap.probability_map` for the options.
        """
        from .probmap import probability_map

        return probability_map(self, image, pixel_size, **kwargs).probabilities

    # ------------------------------------------------------------ explanations
    def attribution(self, data: Any, target: Any = None, method: str = "integrated-gradients",
                    **kwargs: Any):
        """Attribution of a crop or a whole micrograph to a class (see :func:`.explain.attribution`)."""
        from ..explain import attribution

        return attribution(self, data, target, method, **kwargs)

    def descriptor_map(self, image: Any = None, pixel_size: Optional[float] = None, **kwargs: Any):
        """Training descriptors, mixture contours and an image's crops (see :func:`.explain.descriptor_map`)."""
        from ..explain import descriptor_map

        return descriptor_map(self, image, pixel_size, **kwargs)

    # ------------------------------------------------------------------ files
    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write weights and metadata to one file (no pickle; see :mod:`.modelio`)."""
        self._check_fitted()
        params = self.get_params()
        params["augment"] = AugmentConfig.coerce(self.augment).to_dict()
        metadata = {
            "params": params,
            "classes": self.classes_,
            "fov_range_um": list(self.fov_range_um_),
            "map_fov_um": self.map_fov_um_,
            "threshold": self.mixture_.threshold_,
            "history": self.history_.to_dict(),
            "held_out_images": self.held_out_images_,
            "scorer_state": self.scorer_.state()[1] if self.scorer_ is not self.mixture_ else None,
            "pixel_size_range_um": list(self.pixel_size_range_um_),
            "normalisation": "per-image percentiles 0.5-99.5 to [0, 1]",
        }
        tensors = with_prefix(self.model_.state_dict(), "model")
        tensors.update({
            "mixture.means": self.mixture_.means_, "mixture.covariances": self.mixture_.covariances_,
            "mixture.weights": self.mixture_.weights_,
            "descriptors.train": self.training_descriptors_, "descriptors.train_labels": self.training_labels_,
            "descriptors.val": self.validation_descriptors_, "descriptors.val_labels": self.validation_labels_,
        })
        if self.scorer_ is not self.mixture_:
            tensors.update(with_prefix(
                {k: torch.as_tensor(np.asarray(v)) for k, v in self.scorer_.state()[0].items()}, "scorer"))
        return save_model_file(path, self.kind, metadata, tensors)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], device: str = "auto") -> "FewShotClassifier":
        """Read a model saved by :meth:`save`."""
        from ..errors import ModelFileError

        metadata, tensors = load_model_file(path, cls.kind)
        try:
            params = dict(metadata["params"])
            params["device"] = device
            if params.get("fov_um") is not None:
                params["fov_um"] = tuple(params["fov_um"])
            params["augment"] = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                 for k, v in params["augment"].items()})
            clf = cls(**params)
            classes = list(metadata["classes"])
            model = DescriptorNet(
                clf.backbone, int(clf.embedding_dim),
                len(classes) if clf.loss == "cross-entropy" else None,
                bool(clf.use_magnification), pretrained=False,
            )
            model.load_state_dict(split_prefix(tensors, "model"), strict=True)
            mixture = OpenSetMixture.from_parameters(
                tensors["mixture.means"].numpy(), tensors["mixture.covariances"].numpy(),
                tensors["mixture.weights"].numpy(), metadata["threshold"],
            )
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            if isinstance(exc, MicrostructureError):
                raise
            raise ModelFileError(f"{str(path)!r} is damaged or incomplete: {exc}") from exc
        clf.device_ = select_device(device)
        clf.model_ = model.to(clf.device_).eval()
        clf.classes_ = classes
        clf.mixture_ = mixture
        state = metadata.get("scorer_state")
        if state is None:
            clf.scorer = "gmm"   # files written before the scorers existed
        clf.scorer_ = mixture if state is None else scorer_from_state(
            clf.scorer, {k: v.numpy() for k, v in split_prefix(tensors, "scorer").items()}, state)
        clf.pixel_size_range_um_ = tuple(metadata.get("pixel_size_range_um", (0.0, float("inf"))))
        clf.history_ = TrainingHistory(**metadata["history"])
        clf.fov_range_um_ = tuple(metadata["fov_range_um"])
        clf.map_fov_um_ = float(metadata["map_fov_um"])
        clf.training_descriptors_ = tensors["descriptors.train"].numpy()
        clf.training_labels_ = tensors["descriptors.train_labels"].numpy()
        clf.validation_descriptors_ = tensors["descriptors.val"].numpy()
        clf.validation_labels_ = tensors["descriptors.val_labels"].numpy()
        clf.held_out_images_ = bool(metadata.get("held_out_images", False))
        return clf
