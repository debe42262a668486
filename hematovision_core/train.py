"""Train a MobileNetV2 transfer-learning classifier on a folder of labelled images.

    python -m hematovision_core.train --data DIR --out models/NAME [options]

A frozen `TrainConfig` decides the run (the command line only builds one), and `train` runs one
function per stage, in this order:
1. `split_data`: a deterministic split, or a given manifest, written to <out>/split.csv.
2. `cache_features`: push each image (and augmented views of training images) through the frozen
   ImageNet base once, up to `FEATURE_CUT_LAYER`, and cache the feature maps.
3. `train_head`: the softmax head on the frozen network (Adam 1e-3).
4. `fine_tune`: the top blocks (BatchNorm frozen) with a low, cosine-decayed learning rate, label
   smoothing and class weights; keep the epoch with the best validation macro-F1, stop early.
5. `calibrate`: write the model folder, then fit a temperature on the served model's validation
   logits (with test-time augmentation where chosen).
6. `evaluate_served`: the calibrated model end to end on the validation and test images; write
   model.keras, model.json (with `TrainConfig.training_record()` as "training") and history.json.
7. `fit_guard`: the out-of-domain guard (ood.py) on the training images' pooled features, its
   threshold on the validation images, written to ood.npz.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hematovision_core import data as datasets
from hematovision_core.augment import PROFILES
from hematovision_core.localize import CROP_GEOMETRY, CROP_MODES
from hematovision_core.model_io import HISTORY_FILE, TTA_VIEWS, write_json, write_model_folder
from hematovision_core.morphology import CARDS

if TYPE_CHECKING:
    import keras

log = logging.getLogger("hematovision.train")

# The names model.json gives the classes, which every page shows: the morphology cards' names.
DISPLAY_NAMES = {cell: card.display_name for cell, card in CARDS.items()}
SELECT_MODES = ("best", "last")
# Paths of the machine a run happened on, not part of its recipe: model.json leaves them out.
UNRECORDED_FIELDS = ("data", "out", "manifest", "cache_dir", "ood_outside")
PATH_FIELDS = ("data", "out", "init_from", "manifest", "cache_dir", "ood_outside")


def parse_fractions(value) -> tuple[float, float, float]:
    """"0.7,0.1,0.2" (or three numbers) -> (0.7, 0.1, 0.2): the train, val and test shares."""
    try:
        fractions = tuple(float(part) for part in
                          (value.split(",") if isinstance(value, str) else value))
    except (TypeError, ValueError):
        fractions = ()
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"A split is three fractions, train,val,test (e.g. 0.7,0.1,0.2); "
                         f"got {value!r}.")
    return fractions


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Defaults are the command line's defaults; the
    command line only builds one (`parse_config`), cross-validation varies one with
    `dataclasses.replace`, and model.json records it (`training_record`, `from_record`)."""

    data: Path  # dataset folder, either layout (data.discover)
    out: Path  # model folder to write, e.g. models/pbc-8class
    name: str | None = None  # model name in model.json; None: the out folder's name
    # augment.PROFILES: "cell" flips/90-degree rotations + colour jitter; "smear" rotation,
    # shift, shear, flips (whole fields, before the crop); "crosslab" cell + stain, zoom, blur, JPEG
    augment: str = "cell"
    crop: str = "none"  # localize.CROP_MODES: "white-cell" crops a smear around its white cell
    views: int = 4  # augmented views cached per training image
    views_per_epoch: int = 1  # cached views of each training image an epoch uses (small data: more)
    head_lr: float = 1e-3  # Adam learning rate of the head stage
    head_epochs: int = 3  # epochs of the head stage (its best epoch is kept in any case)
    epochs: int = 12  # fine-tuning epochs at most; 0: a head on the frozen network only
    patience: int = 4  # fine-tuning stops after this many epochs without a better val macro-F1
    lr: float = 3e-4  # peak fine-tuning learning rate (5% warm-up, cosine decay to 1% of it)
    batch_size: int = 64  # feature maps per step, both stages
    label_smoothing: float = 0.1  # of the cross-entropy loss, both stages
    dropout: float = 0.2  # rate of the dropout layer before the logits
    fine_tune_from: str = "block_11_expand"  # first layer to fine-tune (above FEATURE_CUT_LAYER)
    # A model folder whose weights start this one instead of ImageNet's: layers of the same name
    # and shape (the head of a different class list starts fresh). None: ImageNet's.
    init_from: Path | None = None
    tta: str = "none"  # model_io.TTA_VIEWS: "dihedral" averages the 8 flips/rotations (8x slower)
    split: tuple[float, float, float] = datasets.DEFAULT_FRACTIONS  # train, val, test fractions
    manifest: Path | None = None  # a split.csv to use instead of splitting (a model, or a fold)
    # SELECT_MODES: keep the epoch with the best validation macro-F1, or the last one
    # (cross-validation: the validation fold must not choose the model; no early stop then)
    select: str = "best"
    seed: int = datasets.DEFAULT_SEED  # split, initial head, augmentation, epoch sampling
    # Base weights: "imagenet" (from $KERAS_HOME/models/), a path to the .h5 file, or "none"
    weights: str = "imagenet"
    input_size: int = 224  # side of the square model input, pixels
    max_per_class: int | None = None  # at most this many images per class (trials); None: all
    cache_dir: Path | None = None  # feature cache; None: the settings' cache folder / "features"
    # Other images (another lab's) to choose the out-of-domain score by; None: Mahalanobis
    ood_outside: Path | None = None
    # Rotated/shifted copies of each validation image for the out-of-domain threshold (small
    # validation splits, e.g. 8 for blood-cells)
    ood_val_copies: int = 0
    skip_ood: bool = False  # fit no out-of-domain guard (cross-validation folds)

    def __post_init__(self):
        for name in PATH_FIELDS:  # accept strings, as the command line and model.json give them
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "split", parse_fractions(self.split))  # model.json: a string
        for name, allowed in (("augment", PROFILES), ("crop", CROP_MODES),
                              ("tta", tuple(TTA_VIEWS)), ("select", SELECT_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}.")

    @property
    def model_name(self) -> str:
        return self.name or self.out.name

    @property
    def base_weights(self) -> str | None:
        """`weights` as build_classifier takes it: None for random weights."""
        return None if self.weights.lower() == "none" else self.weights

    def training_record(self) -> dict:
        """The settings model.json keeps under "training": the recipe, in JSON types."""
        record = {}
        for item in fields(self):
            if item.name in UNRECORDED_FIELDS:
                continue
            value = getattr(self, item.name)
            if item.name == "split":
                value = ",".join(map(str, value))
            record[item.name] = str(value) if isinstance(value, Path) else value
        return record

    @classmethod
    def from_record(cls, training: dict, data: Path, out: Path, **paths) -> TrainConfig:
        """The config a model.json "training" record describes, run on `data` into `out` (and
        `paths`: manifest, cache_dir, ood_outside). Settings an older record lacks take today's
        defaults; what training adds to the record (feature_cut_layer, minutes) is left out."""
        recipe = {item.name for item in fields(cls)} - set(UNRECORDED_FIELDS)
        return cls(data=data, out=out, **paths,
                   **{key: value for key, value in training.items() if key in recipe})


def build_parser() -> argparse.ArgumentParser:
    """The command line. Each option sets the TrainConfig field of its name; an option not given
    is left out of the namespace (`argparse.SUPPRESS`), so TrainConfig's default holds."""
    p = argparse.ArgumentParser(prog="python -m hematovision_core.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, required=True, help="dataset folder (either layout)")
    p.add_argument("--out", type=Path, required=True, help="model folder to write, e.g. models/pbc-8class")
    p.add_argument("--name", help="model name (default: the --out folder's name)")
    p.add_argument("--augment", choices=PROFILES,
                   help="cell: flips/90-degree rotations + colour jitter; smear: rotation, shift, "
                        "shear, flips; crosslab: cell + stain, zoom, blur and JPEG of another lab")
    p.add_argument("--crop", choices=CROP_MODES,
                   help="white-cell: crop whole-field smears around the stained white cell")
    p.add_argument("--views", type=int, help="augmented views cached per training image")
    p.add_argument("--views-per-epoch", type=int,
                   help="cached views of each training image used in one epoch (small datasets: more)")
    p.add_argument("--head-lr", type=float)
    p.add_argument("--head-epochs", type=int)
    p.add_argument("--epochs", type=int, help="fine-tuning epochs (at most)")
    p.add_argument("--patience", type=int, help="early stopping on validation macro-F1")
    p.add_argument("--lr", type=float, help="peak fine-tuning learning rate")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--dropout", type=float)
    p.add_argument("--fine-tune-from",
                   help="first layer to fine-tune (everything above the feature cache)")
    p.add_argument("--init-from", type=Path,
                   help="model folder whose weights start this one instead of ImageNet's (layers "
                        "of the same name and shape; the head of a different class list starts fresh)")
    p.add_argument("--tta", choices=tuple(TTA_VIEWS),
                   help="dihedral: average predictions over the 8 flips and rotations (8x slower)")
    p.add_argument("--split", type=fractions_argument, help="train,val,test fractions")
    p.add_argument("--manifest", type=Path,
                   help="use this split.csv instead of splitting (reproduce a model, or a fold)")
    p.add_argument("--select", choices=SELECT_MODES,
                   help="keep the epoch with the best validation macro-F1, or the last one "
                        "(cross-validation: the validation fold must not choose the model)")
    p.add_argument("--seed", type=int)
    p.add_argument("--weights",
                   help='"imagenet" (from $KERAS_HOME/models/), a path to the .h5 file, or "none"')
    p.add_argument("--input-size", type=int)
    p.add_argument("--max-per-class", type=int, help="use at most N images per class (quick trials)")
    p.add_argument("--cache-dir", type=Path, help="feature cache (default var/cache/features)")
    p.add_argument("--ood-outside", type=Path,
                   help="a folder of other images (another lab's) to choose the out-of-domain "
                        "score by; without it the Mahalanobis score is kept")
    p.add_argument("--ood-val-copies", type=int,
                   help="rotated/shifted copies of each validation image for the out-of-domain "
                        "threshold (small validation splits, e.g. 8 for blood-cells)")
    p.add_argument("--skip-ood", action="store_true",
                   help="do not fit the out-of-domain guard (cross-validation folds)")
    return p


def fractions_argument(text: str) -> tuple[float, float, float]:
    """`parse_fractions` for argparse, which reports an ArgumentTypeError as a usage error."""
    try:
        return parse_fractions(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def parse_config(argv=None, **defaults) -> TrainConfig:
    """The TrainConfig a command line asks for; `defaults` replace TrainConfig's where the
    command line is silent (cross-validation's folds: select="last", skip_ood=True)."""
    parser = build_parser()
    parser.set_defaults(**defaults)
    return TrainConfig(**vars(parser.parse_args(argv)))


# ---- helpers of the stages -----------------------------------------------------------------


def limit_per_class(records, limit: int | None, seed: int):
    if not limit:
        return list(records)
    rng = np.random.RandomState(seed)
    kept = []
    for label in sorted({r.label for r in records}):
        group = [r for r in records if r.label == label]
        kept += [group[i] for i in sorted(rng.permutation(len(group))[:limit])]
    return kept


def copy_matching_weights(source_folder: Path, target) -> int:
    """Copy weights from a trained model folder into `target`'s layers of the same name and shape."""
    import keras

    from hematovision_core.model_io import MODEL_FILE, read_metadata

    read_metadata(source_folder)  # refuse a broken folder with a clear error
    source = keras.models.load_model(Path(source_folder) / MODEL_FILE, compile=False)
    copied = 0
    for layer in target.layers:
        try:
            weights = source.get_layer(layer.name).get_weights()
        except ValueError:
            continue
        if weights and [w.shape for w in weights] == [w.shape for w in layer.get_weights()]:
            layer.set_weights(weights)
            copied += 1
    return copied


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    weights = len(labels) / (num_classes * np.maximum(counts, 1))
    return {i: float(w) for i, w in enumerate(weights)}


def epoch_sample(train_maps: np.ndarray, rng: np.random.Generator, per_image: int = 1):
    """`per_image` distinct random cached views of every training image, as one epoch.

    Returns:
        (inputs (N * per_image, H, W, C) float32, image indices (N * per_image,)).
    """
    count, views = train_maps.shape[:2]
    per_image = min(per_image, views)
    chosen = np.argsort(rng.random((count, views)), axis=1)[:, :per_image]  # (N, per_image)
    images = np.repeat(np.arange(count), per_image)
    return np.asarray(train_maps[images, chosen.reshape(-1)], dtype=np.float32), images


def served_logits(classifier, records, batch_size: int = 32) -> np.ndarray:
    """(N, num_classes) uncalibrated logits of the model as served (ONNX Runtime, its crop and
    test-time augmentation), row-aligned with `records`. Every image was decoded whole while its
    feature maps were cached, so none is skipped here."""
    inference = classifier.infer([record.path for record in records], batch_size=batch_size,
                                 skip_unreadable=False)  # the one inference path (predict.py)
    return inference.logits


def dataset_name(root: Path) -> str:
    """The dataset's path inside the data folder (e.g. "pbc", "blood-cells/TRAIN"), where the
    app looks for it and for the images of the split manifest."""
    from hematovision_core.config import Settings

    data_dir = Settings.from_env().data_dir.resolve()
    return root.relative_to(data_dir).as_posix() if root.is_relative_to(data_dir) else root.name


# ---- 1. split -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Splits:
    """A run's images by split, with their labels as class indices."""

    root: Path  # the dataset folder
    classes: tuple[str, ...]  # sorted lower-case class names: the model's output order
    manifest: Path  # <out>/split.csv, as written
    images: int  # images in the run, all splits
    records: dict[str, list]  # split ("train", "val", "test") -> data.ImageRecord list
    labels: dict[str, np.ndarray]  # split -> (N,) int class indices, row-aligned with records


def split_data(config: TrainConfig) -> Splits:
    """Split the images (or take `config.manifest`'s split) and write <out>/split.csv."""
    dataset = datasets.discover(config.data)
    records = limit_per_class(dataset.records, config.max_per_class, config.seed)
    if config.manifest:
        records = datasets.records_on_disk(config.manifest, dataset)
    else:
        records = datasets.split_records(records, config.split, config.seed)
    config.out.mkdir(parents=True, exist_ok=True)
    manifest = config.out / datasets.MANIFEST_NAME
    datasets.write_manifest(records, dataset.root, manifest)
    index_of = {c: i for i, c in enumerate(dataset.classes)}
    by_split = {s: [r for r in records if r.split == s] for s in datasets.SPLITS}
    for split in datasets.SPLITS:
        log.info("%s: %d images %s", split, len(by_split[split]), datasets.class_counts(by_split[split]))
    if not by_split["train"] or not by_split["val"]:
        raise ValueError("Training needs at least one training and one validation image.")
    labels = {s: np.array([index_of[r.label] for r in by_split[s]], int) for s in datasets.SPLITS}
    return Splits(dataset.root, tuple(dataset.classes), manifest, len(records), by_split, labels)


# ---- 2. model and cached feature maps -------------------------------------------------------


def build_model(config: TrainConfig, num_classes: int) -> keras.Model:
    """MobileNetV2 with a fresh head; ImageNet's base, or `config.init_from`'s matching layers."""
    from hematovision_core.model import build_classifier

    model = build_classifier(num_classes, weights=config.base_weights, dropout=config.dropout,
                             input_size=config.input_size)
    if config.init_from:
        copied = copy_matching_weights(config.init_from, model)
        log.info("Started %d layers from %s", copied, config.init_from)
    return model


@dataclass(frozen=True)
class Network:
    """The classifier and the part of it above the feature cut, sharing layers and weights."""

    model: keras.Model  # image -> probabilities: what the model folder saves
    top: keras.Model  # cut feature maps -> probabilities: what the stages train
    top_logits: keras.Model  # cut feature maps -> logits (the same layers): validation


def split_network(model: keras.Model) -> Network:
    """The model with its top (everything above FEATURE_CUT_LAYER) as models of their own."""
    import keras

    from hematovision_core.model import FEATURE_CUT_LAYER, LOGITS_LAYER, split_at

    _, top = split_at(model, FEATURE_CUT_LAYER)
    top_logits = keras.Model(model.get_layer(FEATURE_CUT_LAYER).output,
                             model.get_layer(LOGITS_LAYER).output)
    return Network(model, top, top_logits)


@dataclass(frozen=True)
class CachedFeatures:
    """The frozen bottom's output for every image: what the head and fine-tuning train on."""

    # split -> (N, views, 14, 14, 96) float16 at 224 px; views: config.views for train, else 1
    maps: dict[str, np.ndarray]
    key: str  # checksum of all that determines them (images, augmentation, the bottom's weights)


def cache_features(config: TrainConfig, model: keras.Model, splits: Splits) -> CachedFeatures:
    """Push every image (and `config.views` augmented views of each training image) through the
    bottom once, reading and writing the feature cache."""
    from hematovision_core import features
    from hematovision_core.model import FEATURE_CUT_LAYER, split_at

    bottom, _ = split_at(model, FEATURE_CUT_LAYER)
    key = dict(manifest=datasets.manifest_checksum(splits.manifest),
               weights=str(config.base_weights), seed=config.seed, cut=FEATURE_CUT_LAYER,
               size=config.input_size,
               augment=config.augment, crop=config.crop, crop_geometry=CROP_GEOMETRY,
               bottom=features.weights_checksum(bottom))
    maps = {}
    for split in datasets.SPLITS:
        views = config.views if split == "train" else 1
        maps[split] = features.cached_feature_maps(
            feature_cache_dir(config), dict(key, split=split, views=views),
            bottom=bottom, paths=[r.path for r in splits.records[split]], views=views,
            profile=config.augment if split == "train" else None, seed=config.seed,
            input_size=config.input_size, crop=config.crop, desc=f"{split} feature maps",
        )
    return CachedFeatures(maps, features.cache_key(**key))


def feature_cache_dir(config: TrainConfig) -> Path:
    from hematovision_core.config import Settings

    return config.cache_dir or Settings.from_env().cache_dir / "features"


# ---- 3. and 4. head, then the top blocks ----------------------------------------------------


@dataclass
class Progress:
    """What one training stage hands the next: the random state that samples each epoch's views,
    the epochs so far (rewritten to <out>/history.json after each), and the checkpoint file."""

    rng: np.random.Generator
    history_file: Path
    checkpoint: Path  # the best weights so far: survives a killed run; not in the model folder
    epochs: list[dict] = field(default_factory=list)

    @classmethod
    def start(cls, config: TrainConfig, cached: CachedFeatures) -> Progress:
        checkpoint = (feature_cache_dir(config) / "checkpoints"
                      / f"{config.model_name}-{cached.key}.weights.h5")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        return cls(np.random.default_rng(config.seed), config.out / HISTORY_FILE, checkpoint)

    def record(self, row: dict) -> None:
        self.epochs.append(row)
        log.info("%s epoch %d: %s", row["stage"], row["epoch"], row)
        write_json(self.history_file, {"epochs": self.epochs})


def fit_epochs(config: TrainConfig, stage: str, network: Network, cached: CachedFeatures,
               splits: Splits, progress: Progress, epochs: int, learning_rate,
               patience: int | None) -> float:
    """Train the top on cached maps, one validation pass an epoch; leave the epoch with the best
    validation macro-F1 (config.select "best", never worse than the start) or the last one.
    Returns the best validation macro-F1."""
    import keras

    from hematovision_core.metrics import macro_f1

    num_classes = len(splits.classes)
    val_inputs = np.asarray(cached.maps["val"][:, 0], dtype=np.float32)  # (N_val, 14, 14, 96)
    one_hot = keras.utils.to_categorical(splits.labels["train"], num_classes)
    class_weight = balanced_class_weights(splits.labels["train"], num_classes)
    verbose = 1 if sys.stdout.isatty() else 2

    def validation_predictions() -> np.ndarray:
        return network.top_logits.predict(val_inputs, batch_size=128, verbose=0).argmax(axis=1)

    network.top.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"])
    # Start from the weights we have, so a stage can never leave a worse model behind.
    best_f1 = macro_f1(splits.labels["val"], validation_predictions(), num_classes)
    best_weights, waited = network.top.get_weights(), 0
    for epoch in range(epochs):
        tick = time.time()
        inputs, images = epoch_sample(cached.maps["train"], progress.rng, config.views_per_epoch)
        fit = network.top.fit(inputs, one_hot[images], batch_size=config.batch_size, epochs=1,
                              class_weight=class_weight, verbose=verbose, shuffle=True)
        val_pred = validation_predictions()
        val_f1 = macro_f1(splits.labels["val"], val_pred, num_classes)
        progress.record(dict(stage=stage, epoch=epoch + 1, loss=fit.history["loss"][0],
                             accuracy=fit.history["accuracy"][0],
                             val_accuracy=float(np.mean(val_pred == splits.labels["val"])),
                             val_macro_f1=val_f1, seconds=round(time.time() - tick, 1)))
        if val_f1 > best_f1:
            best_f1, best_weights, waited = val_f1, network.top.get_weights(), 0
            network.top.save_weights(progress.checkpoint)
        else:
            waited += 1
            if patience is not None and waited >= patience:
                log.info("Early stop: no better validation macro-F1 for %d epochs", patience)
                break
    if config.select == "best":
        network.top.set_weights(best_weights)
    return best_f1


def train_head(config: TrainConfig, network: Network, cached: CachedFeatures, splits: Splits,
               progress: Progress) -> float:
    """Train the head alone on the frozen network (Adam at `config.head_lr`)."""
    from hematovision_core.model import set_trainable_top

    set_trainable_top(network.model, None)
    return fit_epochs(config, "head", network, cached, splits, progress,
                      config.head_epochs, config.head_lr, patience=None)


def fine_tune(config: TrainConfig, network: Network, cached: CachedFeatures, splits: Splits,
              progress: Progress) -> float | None:
    """Fine-tune from `config.fine_tune_from` up (BatchNorm frozen) with a warm-up and cosine
    decay of the learning rate; early stopping only where the best epoch is kept. None where
    `config.epochs` is 0."""
    import keras

    from hematovision_core.model import set_trainable_top

    if not config.epochs:
        return None
    set_trainable_top(network.model, config.fine_tune_from)
    steps = config.epochs * int(np.ceil(len(splits.labels["train"]) * config.views_per_epoch
                                        / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=config.lr, warmup_steps=max(1, steps // 20), alpha=0.01)
    return fit_epochs(config, "fine_tune", network, cached, splits, progress, config.epochs,
                      schedule, config.patience if config.select == "best" else None)


# ---- 5. and 6. the model folder, calibrated and evaluated as served -------------------------


def model_metadata(config: TrainConfig, splits: Splits) -> dict:
    """model.json before calibration and evaluation fill in the temperature and metrics."""
    from hematovision_core.model import FEATURE_CUT_LAYER

    source = f"ImageNet, then {config.init_from.name}" if config.init_from else "ImageNet"
    return dict(
        name=config.model_name,
        architecture=f"MobileNetV2 (alpha 1.0, {source}) + global average pooling + dropout + softmax",
        classes=list(splits.classes),
        display_names=[DISPLAY_NAMES.get(c, c.title()) for c in splits.classes],
        input_size=config.input_size,
        preprocessing="RGB, EXIF orientation, crop (see crop), bilinear resize to input_size, "
                      "x / 127.5 - 1",
        crop=config.crop,
        tta=config.tta,
        temperature=1.0,
        data=dict(dataset=dataset_name(splits.root), images=splits.images,
                  counts={s: datasets.class_counts(splits.records[s]) for s in datasets.SPLITS},
                  split_manifest=datasets.MANIFEST_NAME,
                  split_manifest_sha256=datasets.manifest_checksum(splits.manifest)),
        training=config.training_record() | {"feature_cut_layer": FEATURE_CUT_LAYER},
        model_sha256="",
    )


def calibrate(classifier, splits: Splits) -> tuple[float, np.ndarray]:
    """The temperature minimising the validation NLL of what users get (the served model, with
    test-time augmentation), fit on its logits. Returns it and those logits (N_val, C)."""
    from hematovision_core.calibration import fit_temperature

    val_logits = served_logits(classifier, splits.records["val"])
    temperature = fit_temperature(val_logits, splits.labels["val"])
    log.info("Temperature %.3f", temperature)
    return temperature, val_logits


def evaluate_served(classifier, splits: Splits, val_logits: np.ndarray) -> dict:
    """model.json's "metrics": the calibrated served model on the validation images (from the
    calibration pass) and the test images."""
    from hematovision_core import metrics
    from hematovision_core.calibration import apply_temperature

    classes = list(splits.classes)
    results = {"val": metrics.summarize(
        splits.labels["val"], apply_temperature(val_logits, classifier.temperature), classes)}
    if splits.records["test"]:
        test_logits = served_logits(classifier, splits.records["test"])
        results["test"] = metrics.summarize(
            splits.labels["test"], apply_temperature(test_logits, classifier.temperature), classes)
    for split, figures in results.items():
        log.info("%s (end to end): accuracy %.4f, macro-F1 %.4f, ECE %.4f", split,
                 figures["accuracy"], figures["macro_f1"], figures["ece"])
    return {
        "validation": results.get("val"),
        "test": results.get("test"),
        "validation_ece_uncalibrated": metrics.expected_calibration_error(
            splits.labels["val"], apply_temperature(val_logits, 1.0)),
        "note": "internal split of the images at hand (see split.csv); not the public held-out set",
    }


# ---- 7. out-of-domain guard -----------------------------------------------------------------


def fit_guard(config: TrainConfig, data_root: Path) -> dict:
    """Gaussians on the training images' pooled features, threshold on validation images
    (ood.py), saved in the model folder; returns its model.json. The forward passes land in the
    explorer's cache."""
    from hematovision_core.config import Settings
    from hematovision_core.ood import save_guard
    from hematovision_core.ood_fit import fit_model_guard
    from hematovision_core.predict import Classifier

    guard, record = fit_model_guard(Classifier.load(config.out), data_root,
                                    config.cache_dir or Settings.from_env().cache_dir,
                                    config.ood_outside,
                                    outside_per_class=100, val_copies=config.ood_val_copies)
    log.info("Out-of-domain guard: %s score, threshold %.4g, %s", guard.score_name,
             guard.threshold, record["flag_rates"])
    return save_guard(config.out, guard, record)


def train(config: TrainConfig) -> dict:
    """Run every stage and write the model folder; returns its model.json."""
    import keras

    from hematovision_core.predict import Classifier

    started = time.time()
    keras.utils.set_random_seed(config.seed)
    splits = split_data(config)
    model = build_model(config, len(splits.classes))
    cached = cache_features(config, model, splits)
    network = split_network(model)
    progress = Progress.start(config, cached)
    train_head(config, network, cached, splits, progress)
    fine_tune(config, network, cached, splits, progress)

    metadata = write_model_folder(model, config.out, model_metadata(config, splits))
    classifier = Classifier.load(config.out)  # calibrated and evaluated as it will be served
    temperature, val_logits = calibrate(classifier, splits)
    classifier.temperature = metadata["temperature"] = temperature
    metadata["metrics"] = evaluate_served(classifier, splits, val_logits)
    metadata["training"]["minutes"] = round((time.time() - started) / 60, 1)
    metadata = write_model_folder(model, config.out, metadata)
    if config.skip_ood:
        return metadata
    return fit_guard(config, splits.root)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = parse_config(argv)
    metadata = train(config)
    test = (metadata.get("metrics") or {}).get("test") or {}
    print(f"Saved {config.out}: test accuracy {test.get('accuracy', float('nan')):.4f}, "
          f"macro-F1 {test.get('macro_f1', float('nan')):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
