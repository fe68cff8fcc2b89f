"""Evaluate any Session on a data set: the FCN paper's four metrics and per-class IoU."""
from __future__ import annotations

from tqdm import tqdm

from edgeseg.data import SegDataset, check_dataset_args, get_dataset

BUILTIN_DATASETS = ("lits", "nuclei", "synthetic")  # the only data sets a model file's config may name
from edgeseg.export.metadata import ModelMeta
from edgeseg.metrics import ConfusionMatrix, SemanticScores
from edgeseg.runtime import Session, predict
from edgeseg.runtime.prepost import model_input


def dataset_for(meta: ModelMeta, name: str, split: str) -> SegDataset:
    """The data set ``name`` prepared the way the model was trained on it (e.g. LiTS with slice context)."""
    same = meta.config.get("dataset") == name
    args = meta.config.get("dataset_args", {}) if same else {}
    check_dataset_args(name, args)  # a model file's: of any type
    return get_dataset(name, split, **args)


def check_channels(dataset, meta: ModelMeta) -> None:
    """Refuse a data set whose images have another channel count than the model takes."""
    if dataset.info.in_channels != meta.in_channels:
        from edgeseg.errors import DataError

        raise DataError(f"data set '{dataset.info.name}' has {dataset.info.in_channels}-channel images but the model takes "
                        f"{meta.in_channels}", "evaluate on the data set the model was trained for")


def check_mask_classes(mask, i: int, dataset, meta: ModelMeta) -> None:
    """Refuse a ground-truth mask with a class the model does not have (a data set of more classes)."""
    from edgeseg.errors import DataError

    bad = mask[(mask != meta.ignore_index) & ((mask < 0) | (mask >= meta.num_classes))]
    if bad.size:
        raise DataError(f"data set '{dataset.info.name}' image {i} has class index {int(bad.max())} but the model "
                        f"'{meta.model}' has {meta.num_classes} classes", "evaluate on a data set with the model's classes")


def check_panoptic_data(dataset, meta: ModelMeta, things: list[int] | None = None) -> None:
    """Refuse a data set the model cannot read, one without panoptic ground truth (instances and thing classes),
    or one whose classes (and, given the model's ``things``, thing classes) are not the model's."""
    from edgeseg.errors import DataError

    check_channels(dataset, meta)
    info = dataset.info
    if getattr(dataset, "instances", None) is None or not info.thing_classes:
        raise DataError(f"data set '{info.name}' has no panoptic ground truth",
                        "use nuclei, lits, synthetic or coco-panoptic:<images>,<json>,<pngs>")
    if info.num_classes != meta.num_classes or (things is not None and sorted(things) != sorted(info.thing_classes)):
        raise DataError(f"data set '{info.name}' has {info.num_classes} classes (things {sorted(info.thing_classes)}) but "
                        f"the model {meta.num_classes}" + (f" (things {sorted(things)})" if things is not None else ""),
                        "evaluate on the data set the model was trained for")


def calibration_batches(meta: ModelMeta, data: str, calib_data: str | None, count: int) -> list:
    """INT8 calibration inputs: ``count`` images spread over the training split of ``calib_data`` (default
    ``data``), preprocessed as the model takes them. A data set without a train/ split is refused unless
    ``calib_data`` names it explicitly: its images are the ones ``edgeseg eval`` and the benchmarks score."""
    from edgeseg.errors import EdgeSegError

    name = calib_data or data
    ds = dataset_for(meta, name, "train")
    if ds.info.notes.get("unsplit") and not calib_data:
        raise EdgeSegError(f"{name} has no train/ split: calibrating INT8 on it would calibrate on the images that are "
                           "scored", "pass --calib-data explicitly (other images), or split the folder into train/ and val/")
    if ds.info.in_channels != meta.in_channels:
        raise EdgeSegError(f"the calibration data set '{name}' has {ds.info.in_channels}-channel images but the model takes "
                           f"{meta.in_channels}", "pass --calib-data with images like the model's input")
    step = max(1, len(ds) // count)
    return [model_input(ds.raw(i)[0], meta) for i in range(0, len(ds), step)][:count]


def evaluate(session: Session, dataset, limit: int | None = None, progress: bool = True, crf=None) -> SemanticScores:
    """``crf``: an ``edgeseg.crf.CRFParams``: each image's labels after the dense CRF (the reference post-processing)."""
    meta = session.meta
    check_channels(dataset, meta)
    if crf is not None:
        from edgeseg.crf import check_crf_model, crf_labels

        check_crf_model(meta)
    cm = ConfusionMatrix(meta.num_classes, meta.ignore_index)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):  # before any image runs (and before the progress bar)
        check_mask_classes(dataset.raw(i)[1], i, dataset, meta)
    for i in tqdm(range(n), desc=f"eval {meta.model} [{session.backend} {session.precision}]", disable=not progress, leave=False):
        image, mask = dataset.raw(i)
        cm.update(crf_labels(session, image, crf) if crf is not None else predict(session, image)["labels"], mask)
    return cm.scores()


def evaluate_instances(session: Session, dataset, limit: int | None = None, progress: bool = True) -> dict:
    """Box and mask AP (``edgeseg.metrics.instance.APScores`` by IoU type) of an instance model on a data set
    with instance ids; each ground-truth instance's class is the majority class of its pixels. A COCO data set
    is scored against its JSON's annotations as they are written (pycocotools' ground truth, crowds included)."""
    from edgeseg.errors import DataError
    from edgeseg.metrics.instance import InstanceEvaluator, instance_truth

    meta = session.meta
    instances = getattr(dataset, "instances", None)
    if instances is None:
        raise DataError(f"data set '{dataset.info.name}' has no instance ids", "evaluate an instance model on nuclei, lits, synthetic or coco:<images>,<json>")
    check_channels(dataset, meta)
    ev = InstanceEvaluator(meta.class_names)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in tqdm(range(n), desc=f"eval {meta.model} [{session.backend} {session.precision}]", disable=not progress, leave=False):
        image, mask = dataset.raw(i)
        found = predict(session, image, masks=True)  # at the image's size, whichever I/O form the graph has
        coco = getattr(dataset, "coco", None)
        if coco is not None:
            ev.add_coco(coco["images"][i], coco["annotations"][i], coco["label_of"], found)
            continue
        truth = instance_truth(instances[i], mask)
        ev.add(truth.masks, truth.labels, found)
    return ev.scores()


def evaluate_components_ap(session: Session, dataset, limit: int | None = None, progress: bool = True) -> dict:
    """The semantic-model-plus-connected-components baseline of instance work: box and mask AP (as
    ``evaluate_instances`` scores them) of a semantic model's argmax labels split into the 4-connected components of
    each of the data set's thing classes, each scored by its class's mean softmax probability
    (``metrics.instance.components_as_detections``)."""
    import numpy as np

    from edgeseg.errors import DataError
    from edgeseg.metrics.instance import InstanceEvaluator, components_as_detections, instance_truth
    from edgeseg.runtime.prepost import model_scores, preprocess, scores_at_image

    meta, instances = session.meta, getattr(dataset, "instances", None)
    things = getattr(dataset.info, "thing_classes", None)
    if instances is None or not things:
        raise DataError(f"data set '{dataset.info.name}' has no instance ids or thing classes", "use nuclei")
    if meta.task != "semantic" or meta.io == "frames" or meta.output_kind != "softmax":
        raise DataError(f"model '{meta.model}' is not a float-contract softmax semantic model",
                        "score its components from its float-contract export")
    check_channels(dataset, meta)
    ev = InstanceEvaluator(meta.class_names)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in tqdm(range(n), desc=f"components {meta.model} [{session.backend} {session.precision}]", disable=not progress,
                  leave=False):
        image, mask = dataset.raw(i)
        x, size = preprocess(image, meta)
        logits = scores_at_image(model_scores(session.run(x), meta), meta, size)[0].astype(np.float64)
        p = np.exp(logits - logits.max(0))
        truth = instance_truth(instances[i], mask)
        ev.add(truth.masks, truth.labels, components_as_detections(logits.argmax(0), p / p.sum(0), things))
    return ev.scores()


def thing_classes_of(meta: ModelMeta) -> list[int]:
    """A panoptic model's thing classes, as its config records them (the rest are stuff)."""
    from edgeseg.errors import OnnxFileError

    things = meta.config.get("thing_classes")
    if not (isinstance(things, list) and things and all(isinstance(c, int) and 0 <= c < meta.num_classes for c in things)):
        raise OnnxFileError(f"panoptic model '{meta.model}' records no valid thing_classes in its config",
                            "re-export it with edgeseg (the config carries the model's thing classes)")
    return things


def evaluate_panoptic(session: Session, dataset, limit: int | None = None, progress: bool = True) -> dict:
    """PQ/SQ/RQ (``edgeseg.metrics.panoptic``) of a panoptic model against the data set's panoptic ground truth,
    and the mIoU of its semantic head beside them (as the papers report): ``{"panoptic": PanopticScores,
    "semantic": SemanticScores}``."""
    from edgeseg.metrics.panoptic import PanopticEvaluator

    meta = session.meta
    things = thing_classes_of(meta)
    check_panoptic_data(dataset, meta, things)
    ev = PanopticEvaluator(meta.num_classes, things, meta.class_names)
    cm = ConfusionMatrix(meta.num_classes, meta.ignore_index)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in tqdm(range(n), desc=f"eval {meta.model} [{session.backend} {session.precision}]", disable=not progress, leave=False):
        image, mask = dataset.raw(i)
        out = predict(session, image)
        ev.add_batch(out["panoptic"][None], out["segments"][None], [dataset.panoptic(i)])
        cm.update(out["semantic"], mask)
    return {"panoptic": ev.scores(), "semantic": cm.scores()}


def evaluate_connected_components(session: Session, dataset, min_area: int = 0, limit: int | None = None,
                                  progress: bool = True):
    """The semantic-model-plus-connected-components baseline of panoptic work: PQ/SQ/RQ of the session's
    per-pixel classes turned panoptic without any instance branch — one segment per stuff class, one per
    4-connected component of each of the data set's thing classes (``panoptic_from_labels``), segments under
    ``min_area`` pixels void. A semantic model's decision, or a panoptic model's semantic head (its argmax)."""
    from edgeseg.metrics.panoptic import PanopticEvaluator, panoptic_from_labels

    meta = session.meta
    check_panoptic_data(dataset, meta)
    things = dataset.info.thing_classes
    ev = PanopticEvaluator(meta.num_classes, things, meta.class_names)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in tqdm(range(n), desc=f"components {meta.model} [{session.backend} {session.precision}]", disable=not progress,
                  leave=False):
        image, _ = dataset.raw(i)
        out = predict(session, image)
        labels = out["semantic"] if meta.task == "panoptic" else out["labels"]
        ev.add(*panoptic_from_labels(labels, things, ignore_index=meta.ignore_index, min_area=min_area), *dataset.panoptic(i))
    return ev.scores()
