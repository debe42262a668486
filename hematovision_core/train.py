"""Train a MobileNetV2 transfer-learning classifier on a folder of labelled images.

    python -m hematovision_core.train --data DIR --out models/NAME [options]

Stages, after a deterministic split (written to <out>/split.csv):
1. Push each image (and augmented views of training images) through the frozen ImageNet base
   once, up to `FEATURE_CUT_LAYER`, and cache the feature maps.
2. Train the softmax head on the frozen network (Adam 1e-3).
3. Fine-tune the top blocks (BatchNorm frozen) with a low, cosine-decayed learning rate, label
   smoothing and class weights; keep the epoch with the best validation macro-F1, stop early.
4. Fit a temperature on the assembled model's validation logits (with test-time augmentation
   where chosen), then evaluate it end to end on the validation and test images, and write
   model.keras, model.json and history.json.
5. Fit the out-of-domain guard (ood.py) on the training images' pooled features, its threshold
   on the validation images, and write ood.npz.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from hematovision_core import data as datasets
from hematovision_core.augment import PROFILES
from hematovision_core.localize import CROP_GEOMETRY, CROP_MODES
from hematovision_core.model_io import HISTORY_FILE, TTA_VIEWS, write_json, write_model_folder

log = logging.getLogger("hematovision.train")

DISPLAY_NAMES = {
    "basophil": "Basophil", "eosinophil": "Eosinophil", "erythroblast": "Erythroblast",
    "ig": "Immature granulocyte", "lymphocyte": "Lymphocyte", "monocyte": "Monocyte",
    "neutrophil": "Neutrophil", "platelet": "Platelet",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hematovision_core.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="dataset folder (either layout)")
    p.add_argument("--out", type=Path, required=True, help="model folder to write, e.g. models/pbc-8class")
    p.add_argument("--name", help="model name (default: the --out folder's name)")
    p.add_argument("--augment", choices=PROFILES, default="cell",
                   help="cell: flips/90-degree rotations + colour jitter; smear: rotation, shift, shear, flips")
    p.add_argument("--crop", choices=CROP_MODES, default="none",
                   help="white-cell: crop whole-field smears around the stained white cell")
    p.add_argument("--views", type=int, default=4, help="augmented views cached per training image")
    p.add_argument("--views-per-epoch", type=int, default=1,
                   help="cached views of each training image used in one epoch (small datasets: more)")
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--head-epochs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=12, help="fine-tuning epochs (at most)")
    p.add_argument("--patience", type=int, default=4, help="early stopping on validation macro-F1")
    p.add_argument("--lr", type=float, default=3e-4, help="peak fine-tuning learning rate")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--fine-tune-from", default="block_11_expand",
                   help="first layer to fine-tune (everything above the feature cache)")
    p.add_argument("--init-from", type=Path,
                   help="model folder whose weights start this one instead of ImageNet's (layers "
                        "of the same name and shape; the head of a different class list starts fresh)")
    p.add_argument("--tta", choices=tuple(TTA_VIEWS), default="none",
                   help="dihedral: average predictions over the 8 flips and rotations (8x slower)")
    p.add_argument("--split", default="0.7,0.1,0.2", help="train,val,test fractions")
    p.add_argument("--manifest", type=Path,
                   help="use this split.csv instead of splitting (reproduce a model, or a fold)")
    p.add_argument("--select", choices=("best", "last"), default="best",
                   help="keep the epoch with the best validation macro-F1, or the last one "
                        "(cross-validation: the validation fold must not choose the model)")
    p.add_argument("--seed", type=int, default=datasets.DEFAULT_SEED)
    p.add_argument("--weights", default="imagenet",
                   help='"imagenet" (from $KERAS_HOME/models/), a path to the .h5 file, or "none"')
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--max-per-class", type=int, help="use at most N images per class (quick trials)")
    p.add_argument("--cache-dir", type=Path, help="feature cache (default var/cache/features)")
    p.add_argument("--ood-outside", type=Path,
                   help="a folder of other images (another lab's) to choose the out-of-domain "
                        "score by; without it the Mahalanobis score is kept")
    p.add_argument("--ood-val-copies", type=int, default=0,
                   help="rotated/shifted copies of each validation image for the out-of-domain "
                        "threshold (small validation splits, e.g. 8 for blood-cells)")
    p.add_argument("--skip-ood", action="store_true",
                   help="do not fit the out-of-domain guard (cross-validation folds)")
    return p.parse_args(argv)


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


def train(args: argparse.Namespace) -> dict:
    import keras

    from hematovision_core import features, metrics
    from hematovision_core.calibration import apply_temperature, fit_temperature
    from hematovision_core.evaluate import record_probabilities
    from hematovision_core.config import Settings
    from hematovision_core.model import (FEATURE_CUT_LAYER, LOGITS_LAYER, build_classifier,
                                         set_trainable_top, split_at)
    from hematovision_core.predict import Classifier

    started = time.time()
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    fractions = tuple(float(x) for x in args.split.split(","))
    name = args.name or args.out.name
    out = args.out
    cache_dir = args.cache_dir or Settings.from_env().cache_dir / "features"

    # 1. Data and split ------------------------------------------------------------------------
    dataset = datasets.discover(args.data)
    records = limit_per_class(dataset.records, args.max_per_class, args.seed)
    if args.manifest:
        records = datasets.records_on_disk(args.manifest, dataset)
    else:
        records = datasets.split_records(records, fractions, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / datasets.MANIFEST_NAME
    datasets.write_manifest(records, dataset.root, manifest)
    classes = list(dataset.classes)
    index_of = {c: i for i, c in enumerate(classes)}
    by_split = {s: [r for r in records if r.split == s] for s in datasets.SPLITS}
    labels = {s: np.array([index_of[r.label] for r in by_split[s]], int) for s in datasets.SPLITS}
    for split in datasets.SPLITS:
        log.info("%s: %d images %s", split, len(by_split[split]), datasets.class_counts(by_split[split]))
    if not by_split["train"] or not by_split["val"]:
        raise ValueError("Training needs at least one training and one validation image.")

    # 2. Model and cached feature maps ----------------------------------------------------------
    weights = None if args.weights.lower() == "none" else args.weights
    model = build_classifier(len(classes), weights=weights, dropout=args.dropout,
                             input_size=args.input_size)
    if args.init_from:
        copied = copy_matching_weights(args.init_from, model)
        log.info("Started %d layers from %s", copied, args.init_from)
    bottom, top = split_at(model, FEATURE_CUT_LAYER)
    key = dict(manifest=datasets.manifest_checksum(manifest), weights=str(weights), seed=args.seed,
               cut=FEATURE_CUT_LAYER, size=args.input_size, augment=args.augment, crop=args.crop,
               crop_geometry=CROP_GEOMETRY, bottom=features.weights_checksum(bottom))
    maps = {}
    for split in datasets.SPLITS:
        views = args.views if split == "train" else 1
        maps[split] = features.cached_feature_maps(
            cache_dir, dict(key, split=split, views=views),
            bottom=bottom, paths=[r.path for r in by_split[split]], views=views,
            profile=args.augment if split == "train" else None, seed=args.seed,
            input_size=args.input_size, crop=args.crop, desc=f"{split} feature maps",
        )
    val_inputs = np.asarray(maps["val"][:, 0], dtype=np.float32)
    # Same layers as `top`, stopping before the softmax: used for validation and temperature.
    top_logits = keras.Model(model.get_layer(FEATURE_CUT_LAYER).output,
                             model.get_layer(LOGITS_LAYER).output)
    one_hot = keras.utils.to_categorical(labels["train"], len(classes))
    class_weight = balanced_class_weights(labels["train"], len(classes))
    verbose = 1 if sys.stdout.isatty() else 2
    checkpoint = cache_dir / "checkpoints" / f"{name}-{features.cache_key(**key)}.weights.h5"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    history = []

    def validation_f1(val_pred=None) -> float:
        if val_pred is None:
            val_pred = top_logits.predict(val_inputs, batch_size=128, verbose=0).argmax(axis=1)
        return metrics.macro_f1(labels["val"], val_pred, len(classes))

    def run_stage(stage: str, epochs: int, learning_rate, patience: int | None):
        top.compile(optimizer=keras.optimizers.Adam(learning_rate),
                    loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing),
                    metrics=["accuracy"])
        # Start from the weights we have, so a stage can never leave a worse model behind.
        best_f1, best_weights, waited = validation_f1(), top.get_weights(), 0
        for epoch in range(epochs):
            tick = time.time()
            inputs, images = epoch_sample(maps["train"], rng, args.views_per_epoch)
            fit = top.fit(inputs, one_hot[images], batch_size=args.batch_size,
                          epochs=1, class_weight=class_weight, verbose=verbose, shuffle=True)
            val_pred = top_logits.predict(val_inputs, batch_size=128, verbose=0).argmax(axis=1)
            val_f1 = validation_f1(val_pred)
            row = dict(stage=stage, epoch=epoch + 1, loss=fit.history["loss"][0],
                       accuracy=fit.history["accuracy"][0],
                       val_accuracy=float(np.mean(val_pred == labels["val"])),
                       val_macro_f1=val_f1, seconds=round(time.time() - tick, 1))
            history.append(row)
            log.info("%s epoch %d: %s", stage, epoch + 1, row)
            write_json(out / HISTORY_FILE, {"epochs": history})
            if val_f1 > best_f1:
                best_f1, best_weights, waited = val_f1, top.get_weights(), 0
                top.save_weights(checkpoint)  # survives a killed run; not part of the model folder
            else:
                waited += 1
                if patience is not None and waited >= patience:
                    log.info("Early stop: no better validation macro-F1 for %d epochs", patience)
                    break
        if args.select == "best":
            top.set_weights(best_weights)
        return best_f1

    # 3. Head, then the top blocks ----------------------------------------------------------------
    set_trainable_top(model, None)
    run_stage("head", args.head_epochs, args.head_lr, None)
    if args.epochs:  # 0: a head on the frozen network, nothing fine-tuned
        set_trainable_top(model, args.fine_tune_from)
        steps = args.epochs * int(np.ceil(len(labels["train"]) * args.views_per_epoch
                                          / args.batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, steps, warmup_target=args.lr, warmup_steps=max(1, steps // 20), alpha=0.01)
        run_stage("fine_tune", args.epochs, schedule,
                  args.patience if args.select == "best" else None)

    # 4. Assemble, calibrate and evaluate end to end, save ----------------------------------------
    source = f"ImageNet, then {args.init_from.name}" if args.init_from else "ImageNet"
    metadata = dict(
        name=name,
        architecture=f"MobileNetV2 (alpha 1.0, {source}) + global average pooling + dropout + softmax",
        classes=classes,
        display_names=[DISPLAY_NAMES.get(c, c.title()) for c in classes],
        input_size=args.input_size,
        preprocessing="RGB, EXIF orientation, crop (see crop), bilinear resize to input_size, "
                      "x / 127.5 - 1",
        crop=args.crop,
        tta=args.tta,
        temperature=1.0,
        data=dict(dataset=dataset_name(dataset.root), images=len(records),
                  counts={s: datasets.class_counts(by_split[s]) for s in datasets.SPLITS},
                  split_manifest=datasets.MANIFEST_NAME,
                  split_manifest_sha256=datasets.manifest_checksum(manifest)),
        training={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                  if k not in ("data", "out", "cache_dir", "manifest", "ood_outside")} | {"feature_cut_layer": FEATURE_CUT_LAYER},
        model_sha256="",
    )
    metadata = write_model_folder(model, out, metadata)  # model.keras and its ONNX export
    classifier = Classifier.load(out)  # evaluated as it will be served
    # The temperature is fit on what users get: the full model, with test-time augmentation;
    # the same validation pass then gives the validation figures.
    val_kept, val_softmax, _ = record_probabilities(classifier, by_split["val"])
    val_logits = np.log(np.maximum(val_softmax, 1e-30))  # softmax inverse, up to a constant
    val_labels = np.array([index_of[r.label] for r in val_kept], int)
    temperature = fit_temperature(val_logits, val_labels)
    classifier.temperature = metadata["temperature"] = temperature
    log.info("Temperature %.3f", temperature)
    results = {"val": metrics.summarize(val_labels, apply_temperature(val_logits, temperature),
                                        classes)}
    if by_split["test"]:
        kept, probabilities, _ = record_probabilities(classifier, by_split["test"])
        results["test"] = metrics.summarize([index_of[r.label] for r in kept], probabilities,
                                            classes)
    for split, figures in results.items():
        log.info("%s (end to end): accuracy %.4f, macro-F1 %.4f, ECE %.4f", split,
                 figures["accuracy"], figures["macro_f1"], figures["ece"])
    uncalibrated = apply_temperature(val_logits, 1.0)
    metadata["metrics"] = {
        "validation": results.get("val"),
        "test": results.get("test"),
        "validation_ece_uncalibrated": metrics.expected_calibration_error(val_labels, uncalibrated),
        "note": "internal split of the images at hand (see split.csv); not the public held-out set",
    }
    metadata["training"]["minutes"] = round((time.time() - started) / 60, 1)
    metadata = write_model_folder(model, out, metadata)

    # 5. Out-of-domain guard: Gaussians on the training images' pooled features, threshold on
    # validation images (ood.py). Its forward passes land in the explorer's cache.
    if args.skip_ood:
        return metadata
    from hematovision_core.ood import save_guard
    from hematovision_core.ood_fit import fit_model_guard

    guard, record = fit_model_guard(Classifier.load(out), dataset.root,
                                    args.cache_dir or Settings.from_env().cache_dir,
                                    args.ood_outside,
                                    outside_per_class=100, val_copies=args.ood_val_copies)
    log.info("Out-of-domain guard: %s score, threshold %.4g, %s", guard.score_name,
             guard.threshold, record["flag_rates"])
    return save_guard(out, guard, record)


def dataset_name(root: Path) -> str:
    """The dataset's path inside the data folder (e.g. "pbc", "blood-cells/TRAIN"), where the
    app looks for it and for the images of the split manifest."""
    from hematovision_core.config import Settings

    data_dir = Settings.from_env().data_dir.resolve()
    return root.relative_to(data_dir).as_posix() if root.is_relative_to(data_dir) else root.name


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    metadata = train(args)
    test = (metadata.get("metrics") or {}).get("test") or {}
    print(f"Saved {args.out}: test accuracy {test.get('accuracy', float('nan')):.4f}, "
          f"macro-F1 {test.get('macro_f1', float('nan')):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
