"""``edgeseg <verb>``: parses arguments and calls the API. A user's mistake prints one line and exits
non-zero; anything else is an edgeseg bug and keeps its traceback."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from edgeseg.errors import EdgeSegError


def _kv(items: list[str] | None) -> dict:
    """``k=v`` pairs with ints, floats and booleans parsed; ``k=1,2`` is a list of ints (e.g. thing_classes)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise EdgeSegError(f"'{item}' is not key=value", "write e.g. --model-arg base_width=16")
        k, v = item.split("=", 1)
        parts = [p.strip() for p in v.split(",") if p.strip()]
        if "," in v and parts and all(p.lstrip("-").isdigit() for p in parts):  # "1," is a list of one
            out[k] = [int(p) for p in parts]
            continue
        for conv in (int, float):
            try:
                out[k] = conv(v)
                break
            except ValueError:
                continue
        else:
            out[k] = {"true": True, "false": False}.get(v.lower(), v)
    return out


def _add_crf_args(s, what: str, window: bool = False) -> None:
    """``--crf`` and the CRF's parameters; defaults: DeepLab's (edgeseg.crf.CRFParams)."""
    from edgeseg.crf import CRFParams

    d = CRFParams()
    s.add_argument("--crf", action="store_true", help=what)
    s.add_argument("--crf-iterations", type=int, default=d.iterations, metavar="N", help=f"mean-field iterations ({d.iterations})")
    s.add_argument("--crf-w-appearance", type=float, default=d.w_appearance, metavar="W1",
                   help=f"weight of the appearance (position + intensity) kernel ({d.w_appearance:g})")
    s.add_argument("--crf-theta-alpha", type=float, default=d.theta_alpha, metavar="PX",
                   help=f"appearance kernel's position width ({d.theta_alpha:g} pixels)")
    s.add_argument("--crf-theta-beta", type=float, default=d.theta_beta, metavar="LEVELS",
                   help=f"appearance kernel's intensity width ({d.theta_beta:g} of 255 levels)")
    s.add_argument("--crf-w-smoothness", type=float, default=d.w_smoothness, metavar="W2",
                   help=f"weight of the smoothness (position) kernel ({d.w_smoothness:g})")
    s.add_argument("--crf-theta-gamma", type=float, default=d.theta_gamma, metavar="PX",
                   help=f"smoothness kernel's width ({d.theta_gamma:g} pixels)")
    if window:
        s.add_argument("--crf-window", type=int, default=d.window, metavar="K",
                       help=f"the exported layer's K×K neighbourhood, odd ({d.window})")


def _crf_params(a):
    """The checked CRF parameters of the command line (checked even without --crf: a typo is never silent)."""
    from edgeseg.crf import CRFParams

    return CRFParams(iterations=a.crf_iterations, w_appearance=a.crf_w_appearance, theta_alpha=a.crf_theta_alpha,
                     theta_beta=a.crf_theta_beta, w_smoothness=a.crf_w_smoothness, theta_gamma=a.crf_theta_gamma,
                     window=getattr(a, "crf_window", CRFParams.window)).checked()


def _crf_line(p) -> str:
    return (f"w1 {p.w_appearance:g}, θα {p.theta_alpha:g}, θβ {p.theta_beta:g}, w2 {p.w_smoothness:g}, "
            f"θγ {p.theta_gamma:g}, {p.iterations} iterations")


def _crf_search(a, session, dataset, base) -> None:
    from edgeseg.crf import search

    results = search(session, dataset, limit=a.limit, base=base)
    print(f"{session.meta.model} on {a.data}/{a.split}: dense CRF grid search ({len(results) - 1} settings), mIoU:")
    for params, miou in results[:8]:
        print(f"  {miou:.4f}  {'no CRF' if params is None else _crf_line(params)}")
    best = results[0][0]
    if best is None:
        print("best: no CRF (the network's own labels)")
    else:
        print(f"best: --crf --crf-w-appearance {best.w_appearance:g} --crf-theta-alpha {best.theta_alpha:g} "
              f"--crf-theta-beta {best.theta_beta:g}")


def _backend_for(path: str, backend: str) -> str:
    if backend != "auto":
        return backend
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix in (".pt", ".pth"):
        return "torch"
    if suffix in (".engine", ".plan", ".trt"):
        return "tensorrt"
    raise EdgeSegError(f"cannot tell the backend of '{path}' from its suffix", "pass --backend, or use .onnx/.pt/.engine")


def _open(path: str, backend: str, plugins: str | None = None):
    """A session for ``path``; ``--plugins`` (comma-separated paths) are the only libraries an engine may load
    besides edgeseg's own plugin folder."""
    from edgeseg.runtime import open_session

    backend = _backend_for(path, backend)
    options = {"plugin_libraries": tuple(plugins.split(","))} if plugins and backend == "tensorrt" else {}
    return open_session(path, backend, **options)


def cmd_zoo(a) -> None:
    import torch

    from edgeseg.models import create, gflops, list_models, model_task
    from edgeseg.models.realtime import PAPER, inference_parameters

    print(f"{'model':34s} {'task':9s} {'params (M)':>10s} {'GFLOPs @ ' + str(a.size) + '²':>16s}  "
          "paper vs ours at 1024×2048 (params M, GMACs: the papers' \"GFLOPs\")")
    for name in list_models(task=None):
        task = model_task(name)
        with torch.device("meta"):
            m = create(name, num_classes=a.num_classes, in_channels=a.in_channels)
        # Detectors' cost depends on their data (proposals, detections): counted for semantic models only.
        cost = f"{gflops(m, a.in_channels, (a.size, a.size)):16.1f}" if task == "semantic" else f"{'—':>16s}"
        paper = PAPER.get(name)
        versus = (f"  {paper['params'] or '—'} M, {paper['gmacs'] or '—'} vs {gflops(m, a.in_channels, (1024, 2048)) / 2:.1f}"
                  if paper else "")
        # params: what runs in eval and exports (training-only heads excluded)
        print(f"{name:34s} {task:9s} {inference_parameters(m) / 1e6:10.2f} {cost}{versus}")


def train_config(a):
    """The TrainConfig the ``train`` verb's arguments describe."""
    from dataclasses import replace

    from edgeseg.train import TrainConfig, apply_recipe

    given = {k: v for k, v in dict(optimizer=a.optimizer, lr=a.lr, weight_decay=a.weight_decay, schedule=a.schedule,
                                   decay_steps=tuple(a.decay_steps) if a.decay_steps else None,
                                   decay_factor=a.decay_factor).items() if v is not None}
    cfg = TrainConfig(model=a.model, dataset=a.data, model_args=_kv(a.model_arg), dataset_args=_kv(a.data_arg),
                      epochs=a.epochs, iterations=a.iterations, minutes=a.minutes, batch_size=a.batch_size,
                      crop=a.crop, weight_map=a.weight_map, seed=a.seed, recipe=a.recipe, **given)
    if a.recipe:  # an option typed on the command line wins over the recipe, even where it repeats a default
        cfg = replace(apply_recipe(cfg), recipe=None, **given)
    return cfg


def cmd_train(a) -> None:
    from edgeseg.train import train, train_qat

    if a.qat:  # the model, data and recipe come from the checkpoint
        if a.model:
            raise EdgeSegError(f"--qat fine-tunes the model its checkpoint holds; MODEL '{a.model}' was given too",
                               "drop MODEL (or drop --qat to train it from the start)")
        out = a.out or str(Path(a.qat).with_suffix("")) + "_qat.pt"
        train_qat(a.qat, out, iterations=a.iterations or 200, minutes=a.minutes, lr=a.lr, calib_images=a.calib_images,
                  onnx_out=a.qat_onnx or str(Path(out).with_suffix("")) + "_int8.onnx")
        return
    if not a.model:
        raise EdgeSegError("no model to train", "name one (edgeseg zoo lists them), or pass --qat CHECKPOINT")
    train(train_config(a), a.out or f"runs/train/{a.model}_{a.data.replace(':', '_').replace('/', '_')}.pt", resume=a.resume)


def cmd_eval(a) -> None:
    from edgeseg.evaluate import (dataset_for, evaluate, evaluate_connected_components, evaluate_instances,
                                  evaluate_panoptic)

    params = _crf_params(a)  # bad parameters are refused before the model is read
    crf = params if a.crf else None
    session = _open(a.model, a.backend, a.plugins)
    if crf is not None or a.crf_search:
        from edgeseg.crf import check_crf_model

        check_crf_model(session.meta)
    if a.crf_search:
        return _crf_search(a, session, dataset_for(session.meta, a.data, a.split), params)
    if a.components and session.meta.task == "instance":
        raise EdgeSegError("--components splits per-pixel classes into segments; an instance model has none",
                           "use it with a semantic or panoptic model")
    dataset = dataset_for(session.meta, a.data, a.split)
    # a folder without <split>/ is scored whole: the header must not name a folder that does not exist
    where = f"{a.data} (no {a.split}/ split: all its images)" if dataset.info.notes.get("unsplit") else f"{a.data}/{a.split}"
    if a.components:
        pq = evaluate_connected_components(session, dataset, limit=a.limit)
        print(f"{session.meta.model} [{session.backend} {session.precision}] on {where}, classes split into "
              "connected components:")
        print("  " + pq.line("panoptic"))
    if session.meta.task == "panoptic":
        scores = evaluate_panoptic(session, dataset, limit=a.limit)
        pq, sem = scores["panoptic"], scores["semantic"]
        print(f"{session.meta.model} [{session.backend} {session.precision}] on {where}:")
        print("  " + pq.line("panoptic"))
        print(f"  semantic head mIoU {sem.miou:.4f}")
        for c, name in enumerate(session.meta.class_names):
            print(f"  {name:20s} PQ {pq.per_class_pq[c]:.4f} SQ {pq.per_class_sq[c]:.4f} RQ {pq.per_class_rq[c]:.4f}")
        return
    if session.meta.task == "instance":
        ap = evaluate_instances(session, dataset, limit=a.limit)
        print(f"{session.meta.model} [{session.backend} {session.precision}] on {where}:")
        print("  " + ap["bbox"].line("box "))
        print("  " + ap["segm"].line("mask"))
        return
    if dataset.info.notes.get("unsplit"):  # the user must know these may be the images the model saw
        n = len(dataset) if a.limit is None else min(a.limit, len(dataset))
        print(f"note: {a.data} has no {a.split}/ split: scoring {n} image(s) of {dataset.info.notes['images']}")
    s = evaluate(session, dataset, limit=a.limit, crf=crf)
    if crf is not None:
        print(f"dense CRF: {_crf_line(crf)}")
    print(f"{session.meta.model} [{session.backend} {session.precision}] on {where}: "
          f"pixel acc {s.pixel_accuracy:.4f}, mean acc {s.mean_accuracy:.4f}, mIoU {s.miou:.4f}, f.w. IoU {s.fw_iou:.4f}")
    for name, iou in zip(session.meta.class_names, s.per_class_iou):
        print(f"  {name:20s} IoU {iou:.4f}")


def cmd_export(a) -> None:
    import torch

    import edgeseg
    from edgeseg.io import check_writable_folder
    from edgeseg.models import create, list_models
    from edgeseg.runtime import meta_from_checkpoint_dict

    crf = _crf_params(a) if a.crf else None
    if crf is None:
        _crf_params(a)  # a bad value is refused even without --crf
    out = a.out or Path(a.model).with_suffix(".onnx").name
    check_writable_folder(out)
    meta = None
    if Path(a.model).is_file():
        from edgeseg.models.checkpoint import load_model_file

        # edgeseg's own, or a torchvision Mask R-CNN state dict (--model-arg: its thresholds and detection count)
        model, payload = load_model_file(a.model, _kv(a.model_arg))
        if payload is not None:
            meta = meta_from_checkpoint_dict(payload["config"], payload["meta"])
    elif a.model in list_models(task=None):
        torch.manual_seed(0)
        model = create(a.model, num_classes=a.num_classes, in_channels=a.in_channels, **_kv(a.model_arg))
    else:
        raise EdgeSegError(f"'{a.model}' is neither a checkpoint file nor a zoo model", "pass a .pt file or a name from 'edgeseg zoo'")
    sample = torch.randn(1, model.edgeseg_config["in_channels"], a.size, a.size) if a.size else None
    from edgeseg.errors import ExportCheckError

    try:
        # the CRF's unrolled iterations trace in seconds with the legacy exporter, in minutes with dynamo
        exporter = a.exporter or ("legacy" if crf else "dynamo")
        report = edgeseg.export_onnx(model, out, meta=meta, exporter=exporter, sample=sample, flavour=a.flavour,
                                     io=a.io, frame_order=a.frame_order, crf=crf)
    except ExportCheckError as e:  # the API's message, with the CLI's spelling of the fix
        raise ExportCheckError(e.what, "try --exporter legacy and report the model", report=e.report) from None
    print(f"wrote {out}; ONNX Runtime vs PyTorch: {report.summary()}")


def cmd_quantize(a) -> None:
    from edgeseg.evaluate import BUILTIN_DATASETS, calibration_batches
    from edgeseg.export.metadata import load_onnx, read_metadata
    from edgeseg.io import check_writable_folder
    from edgeseg.quant import check_quantizable, convert_fp16, failed_check_path, quantize_int8

    out = a.out or str(Path(a.model).with_suffix("")) + f"_{a.precision}.onnx"
    check_writable_folder(out)
    if a.precision == "fp16":
        if a.analyze or a.max_drop is not None or a.compare_calibration:
            raise EdgeSegError("--analyze, --max-drop and --compare-calibration are INT8 options", "drop them, or use --precision int8")
        convert_fp16(a.model, out)
        print(f"wrote {out}")
        return
    proto = load_onnx(a.model, load_weights=False)
    meta = read_metadata(proto, a.model)
    check_quantizable(proto, meta, a.model)  # before the calibration data is read
    trained_on = meta.config.get("dataset")
    if not trained_on and not a.calib_data:  # no silent fallback: a foreign model's images are the user's to name
        raise EdgeSegError(f"{a.model} records no data set it was trained on, so there are no images to calibrate INT8 on",
                           "pass --calib-data with images like the model's input (a data set name or folder:<path>)")
    if not a.calib_data and trained_on not in BUILTIN_DATASETS:  # a model file never picks the files edgeseg reads
        raise EdgeSegError(f"the model's config names the calibration data set {str(trained_on)[:80]!r}, which is not "
                           f"built in ({', '.join(BUILTIN_DATASETS)}); edgeseg reads only data sets you name",
                           "pass --calib-data with the images to calibrate on")
    batches = calibration_batches(meta, trained_on, a.calib_data, a.calib_images)
    check_data = _check_pairs(meta, a.calib_data or trained_on, a.check_images)
    options = dict(per_channel=not a.per_tensor, reduce_range=not a.full_range)
    if a.analyze or a.compare_calibration:
        _quantize_reports(a, batches, check_data, options)
        return
    if a.max_drop is not None:
        from edgeseg.quant.sensitivity import quantize_mixed

        if a.target == "tensorrt":
            raise EdgeSegError("--max-drop keeps layers float in ONNX Runtime's Q/DQ form", "drop --target tensorrt")
        result = quantize_mixed(a.model, out, batches, check_data, a.max_drop, a.method, group_depth=a.group_depth,
                                force=a.force, **options)
        print(f"kept in float ({len(result.float_layers)}): {', '.join(result.float_layers) or 'none'}; "
              f"drop {result.drop:.2f} pts (all INT8: {result.int8_drop:.2f})")
        failed = result.path != Path(out)
        print(f"wrote {result.path}" + (" (it FAILED its check)" if failed else ""))
        return
    written_meta = quantize_int8(a.model, out, batches, a.method, check_data=check_data, force=a.force, target=a.target,
                                 **options)
    if written_meta.config.get("check", {}).get("passed") is False:
        print(f"wrote {failed_check_path(out)} (it FAILED its check; --max-drop keeps the sensitive layers in float)")
    else:
        print(f"wrote {out}")


def _check_pairs(meta, name: str, count: int):
    """Up to ``count`` validation (input, labels) pairs of data set ``name`` to check INT8 on; None where the data set
    has no val/ split (the check then runs on the calibration images, as it says)."""
    from edgeseg.evaluate import dataset_for
    from edgeseg.parity import dataset_batches

    try:
        ds = dataset_for(meta, name, "val")
    except EdgeSegError:
        return None
    if ds.info.notes.get("unsplit") or not len(ds):
        return None
    return list(dataset_batches(ds, meta, count))


def _quantize_reports(a, batches, check_data, options) -> None:
    """--analyze (per-layer sensitivity: table and chart) and --compare-calibration (minmax/entropy/percentile)."""
    from edgeseg.bench.quant_report import calibration_markdown, sensitivity_markdown, write_sensitivity
    from edgeseg.quant.sensitivity import analyze, compare_calibration

    stem = Path(a.model).stem
    out_dir = Path(a.out_dir or Path(a.model).parent)
    if a.analyze:
        report = analyze(a.model, batches, check_data, a.method, group_depth=a.group_depth, **options)
        paths = write_sensitivity(report, out_dir, f"{stem}_sensitivity")
        print(sensitivity_markdown(report))
        print(f"wrote {', '.join(map(str, paths))}")
    if a.compare_calibration:
        print("\n".join(calibration_markdown(compare_calibration(a.model, batches, check_data, **options))))


def cmd_build(a) -> None:
    from edgeseg.runtime.tensorrt.build import build_engine, parse_shapes

    shapes = parse_shapes(a.shapes) if a.shapes else None  # checked before TensorRT is looked for
    out = a.out or str(Path(a.model).with_suffix("")) + f"_{a.precision}.engine"
    build_engine(a.model, out, a.precision, shapes=shapes, workspace_mb=a.workspace, timing_cache=a.timing_cache,
                 builder_optimization_level=a.builder_optimization_level, version_compatible=a.version_compatible,
                 hardware_compatible=a.hardware_compatible, dla_core=a.dla_core,
                 plugins=tuple(a.plugins.split(",")) if a.plugins else ())
    print(f"wrote {out} (+ {Path(out).name}.json)")


def cmd_triton(a) -> None:
    from edgeseg.deploy.triton import write_triton_repository

    folder = write_triton_repository(a.model, a.repo, name=a.name, version=a.version, max_batch_size=a.max_batch_size,
                                     instances=a.instances, kind=a.kind, dynamic_batching=not a.no_dynamic_batching,
                                     max_queue_delay_us=a.max_queue_delay_us)
    print(f"wrote {folder} (config.pbtxt, {a.version}/, edgeseg.json)")


def cmd_serve(a) -> None:
    from edgeseg.deploy.serve import ServeError, serve

    code = serve(a.model, http_port=a.http_port, grpc_port=a.grpc_port, metrics_port=a.metrics_port, host=a.host,
                 max_batch=a.max_batch, max_queue_delay_us=a.max_queue_delay_us, instances=a.instances,
                 dynamic_batching=not a.no_dynamic_batching, name=a.name, exit_timeout_s=a.exit_timeout,
                 max_request_mb=a.max_request_mb)
    if code != 0:
        raise ServeError(f"tritonserver exited with status {code}", "see its log above")


def cmd_infer(a) -> None:
    from edgeseg.data import load_image
    from edgeseg.data.folder import IMAGE_SUFFIXES
    from edgeseg.io import check_writable_folder
    from edgeseg.runtime import predict
    from edgeseg.runtime.stream import source_kind
    from edgeseg.viz import colourize, overlay, save_png

    kinds = [source_kind(s) for s in a.images]
    params = _crf_params(a)
    crf = params if a.crf else None
    if a.out or a.labels_dir or a.coco_json or any(k not in ("image", "folder") for k in kinds):
        if crf is not None:
            raise EdgeSegError("--crf refines image files (the dense CRF is far slower than a frame)",
                               "pass image files or folders, or export the model with --crf for streams")
        if a.image_ids:
            raise EdgeSegError("--image-ids names the ids of image files; a stream's frames are numbered",
                               "drop --image-ids, or infer the images without --out/--labels-dir/--coco-json")
        return _infer_stream(a)
    out_dir = Path(a.out_dir)
    check_writable_folder(out_dir / "labels.png")  # before the model runs: out_dir and its parents are folders or absent
    ids = coco_ids = None
    if a.image_ids:  # results pycocotools' loadRes takes against the data set's JSON
        from edgeseg.data.coco import image_ids

        ids, coco_ids = image_ids(a.image_ids)
    session = _open(a.model, a.backend, a.plugins)
    meta = session.meta
    if crf is not None:
        from edgeseg.crf import check_crf_model, crf_labels

        check_crf_model(meta)
    if coco_ids is not None and len(coco_ids) + 1 != meta.num_classes:
        raise EdgeSegError(f"{a.image_ids} lists {len(coco_ids)} categories but model '{meta.model}' has "
                           f"{meta.num_classes - 1} besides background", "pass the JSON of the data set the model was trained on")
    paths = [p for s, k in zip(a.images, kinds)
             for p in (sorted(q for q in Path(s).iterdir() if q.suffix.lower() in IMAGE_SUFFIXES) if k == "folder" else [s])]
    missing = [str(p) for p in paths if ids is not None and Path(p).name not in ids]
    if missing:
        raise EdgeSegError(f"{missing[0]} is not among the images of {a.image_ids}",
                           "pass the images that JSON lists, or drop --image-ids")
    for path in paths:
        image = load_image(path, meta.in_channels, max_pixels=a.max_pixels)
        # predict: either I/O form (float contract or uint8-frames deploy graph), decisions at the image's size
        if meta.task == "instance":
            _write_instances(path, image, predict(session, image, masks=True), meta, out_dir,
                             None if ids is None else (ids[Path(path).name], coco_ids))
            continue
        if meta.task == "panoptic":
            _write_panoptic(path, image, predict(session, image), meta, out_dir)
            continue
        labels = crf_labels(session, image, crf) if crf is not None else predict(session, image)["labels"]
        stem = Path(path).stem
        save_png(out_dir / f"{stem}_labels.png", labels)
        save_png(out_dir / f"{stem}_overlay.png", overlay(image, labels, meta.num_classes))
        if a.colour:
            save_png(out_dir / f"{stem}_colour.png", colourize(labels, meta.num_classes))
        present = ", ".join(f"{meta.class_names[c]} {100 * (labels == c).mean():.1f}%" for c in sorted(set(labels.ravel().tolist())))
        print(f"{path}: {present} -> {out_dir / (stem + '_labels.png')}")


def _infer_stream(a) -> None:
    """One SOURCE (video file, URL, /dev/videoN, GStreamer pipeline, folder, image) through the pipelined stream:
    an overlay video (--out), label PNGs, COCO JSON, a progress bar with live FPS, and a summary (printed and JSON)."""
    from tqdm import tqdm

    from edgeseg.runtime.stream import Stream, open_source

    if len(a.images) != 1:
        raise EdgeSegError(f"a stream takes one SOURCE, got {len(a.images)}",
                           "pass one video, URL, device, pipeline or folder (several images: without --out)")
    summary = a.summary or (f"{a.out}.json" if a.out else str(Path(a.out_dir) / "stream.json"))
    source = open_source(a.images[0], a.max_pixels, a.timeout, a.live)  # a bad source is refused before the model loads
    try:
        session = _open(a.model, a.backend, a.plugins)
        stream = Stream(session, source, out=a.out, labels_dir=a.labels_dir, coco_json=a.coco_json, summary_json=summary,
                        max_pixels=a.max_pixels, max_frames=a.max_frames)
    except BaseException:
        source.close()
        raise
    total = None if source.live else source.count
    if total and a.max_frames:
        total = min(total, a.max_frames)
    try:
        with tqdm(total=total, unit="frame", disable=None, dynamic_ncols=True) as bar:  # no bar unless a terminal
            for _frame, _result in stream:
                bar.update()
    finally:
        stream.close()
        if stream.summary:
            print(stream.summary_text())
            written = [x for x in (a.out, a.labels_dir, a.coco_json) if x]
            print(f"wrote {', '.join(map(str, written + [summary]))}")


def _write_instances(path, image, found: dict, meta, out_dir: Path, coco=None) -> None:
    """An instance model's answer for one image: a drawing, the instance id map and COCO results JSON (``coco``: the
    data set's (image id, category ids by label), else the file stem and the model's labels)."""
    import json

    import numpy as np

    from edgeseg.io import write_text_atomic
    from edgeseg.runtime.stream import coco_detections
    from edgeseg.viz import draw_instances, save_png

    stem = Path(path).stem
    save_png(out_dir / f"{stem}_instances.png", draw_instances(image, found, meta.class_names))
    save_png(out_dir / f"{stem}_ids.png", found["instance_map"].astype(np.uint16))  # PNG has 8- and 16-bit grey
    results = coco_detections(found, stem if coco is None else coco[0], meta.class_names)
    for r in results if coco is not None else []:
        r["category_id"] = coco[1][r["category_id"] - 1]  # labels 1..K -> the JSON's category ids
    write_text_atomic(out_dir / f"{stem}_instances.json", json.dumps(results))
    counts = {}
    for r in results:
        counts[r["category"]] = counts.get(r["category"], 0) + 1
    listed = ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "no detections"
    print(f"{path}: {listed} -> {out_dir / (stem + '_instances.png')}")


def _write_panoptic(path, image, found: dict, meta, out_dir: Path) -> None:
    """A panoptic model's answer for one image, as COCO panoptic writes it: the id PNG (id = R + 256·G +
    256²·B), its JSON (segments_info with category, area, box, score) and a colour overlay."""
    import json

    import numpy as np

    from edgeseg.io import write_text_atomic
    from edgeseg.metrics.panoptic import segments_from_table
    from edgeseg.viz import overlay, save_png

    ids = found["panoptic"].astype(np.int64)
    stem = Path(path).stem
    save_png(out_dir / f"{stem}_panoptic.png", np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8))
    segments, names = [], []
    for seg in segments_from_table(found["segments"]):
        ys, xs = np.nonzero(ids == seg["id"])
        if not len(ys):  # its pixels were all in the padding
            continue
        name = meta.class_names[seg["category"]] if 0 <= seg["category"] < len(meta.class_names) else str(seg["category"])
        names.append(name)
        segments.append({"id": int(seg["id"]), "category_id": int(seg["category"]), "category": name,
                         "isthing": int(bool(seg.get("is_thing"))), "iscrowd": 0, "area": int(len(ys)),
                         "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                         "score": float(seg.get("score", 1.0))})
    write_text_atomic(out_dir / f"{stem}_panoptic.json", json.dumps(
        {"image_id": stem, "file_name": f"{stem}_panoptic.png", "segments_info": segments}))
    save_png(out_dir / f"{stem}_overlay.png", overlay(image, ids, int(ids.max()) + 1))  # a colour per segment
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    listed = ", ".join(f"{k} {c}" for c, k in sorted(counts.items())) or "no segments"
    print(f"{path}: {listed} -> {out_dir / (stem + '_panoptic.png')}")


def cmd_check(a) -> None:
    from edgeseg.export.check import check_model
    from edgeseg.ops.native import plugin_dir

    library = a.plugins or plugin_dir() / "libedgeseg_trt.so"
    report = check_model(a.model, a.target, library)
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(problem)
    verdict = "passes" if report.passed else f"fails ({len(report.problems)} problem(s))"
    print(f"{a.model}: {report.nodes} nodes, {verdict} {report.target.describe()}")
    if not report.passed:
        sys.exit(2)


def cmd_parity(a) -> None:
    from edgeseg.evaluate import dataset_for
    from edgeseg.parity import compare, dataset_batches, random_batches

    ref = _open(a.reference, a.reference_backend, a.plugins)
    cand = _open(a.candidate, a.backend, a.plugins)
    if a.data:
        batches = dataset_batches(dataset_for(ref.meta, a.data, a.split), ref.meta, a.limit)
    else:
        d = max(ref.meta.size_divisor, 32)  # a model that pads itself (size_divisor 1) is still compared at 256²
        sizes = [(8 * d, 8 * d), (6 * d, 10 * d)]
        batches = random_batches(ref.meta, sizes)
        print(f"note: no --data: comparing on random inputs ({', '.join(f'{h}×{w}' for h, w in sizes)}), so no accuracy "
              "metric; pass --data to compare on real images and score both")
    report = compare(ref, cand, batches)
    print(f"{cand.meta.model} [{cand.backend}] vs {ref.backend}: {report.summary()}")
    if not report.passed:
        sys.exit(1)


def cmd_bench(a) -> None:
    from edgeseg.bench import bench_files, run_bench, write_report
    from edgeseg.deploy.jetson import power_sampler_from_env
    from edgeseg.io import check_plain_name
    from edgeseg.models import list_models

    check_plain_name(a.name, "--name")  # the report's files stay inside --out
    if a.stages and not a.profile:
        raise EdgeSegError("--stages is part of --profile", "add --profile")
    probe = power_sampler_from_env()  # scripts/jetson/bench.sh: tegrastats power while the variants are timed
    variants = tuple(a.variants.split(","))
    items = list(a.items) + [m for arg in (a.models, a.checkpoints) if arg for m in arg.split(",") if m]
    items = [m for item in (items or ["all"]) for m in (list_models() if item == "all" else [item])]
    if a.data:
        report = bench_files(items, a.data, variants, a.batch, (a.size, a.size) if a.size else None,
                             calib_images=a.calib_images, calib_data=a.calib_data, warmup=a.warmup, repeats=a.repeats,
                             examples=a.examples, profile=a.profile, probe=probe, stages=a.stages)
        title = f"edgeseg benchmark on {a.data}: accuracy vs latency"
    else:
        files = [m for m in items if m not in list_models(task=None)]
        if files:
            raise EdgeSegError(f"{', '.join(files)}: model files are benchmarked on a data set",
                               "add --data (e.g. --data synthetic, or folder:<path>)")
        size = a.size or 512
        report = run_bench(items, variants, (size, size), a.batch, a.num_classes,
                           calib_images=a.calib_images, warmup=a.warmup, repeats=a.repeats, profile=a.profile,
                           probe=probe, stages=a.stages)
        title = f"edgeseg zoo benchmark at {a.batch}×3×{size}×{size}"
    paths = write_report(report, a.out, a.name, title)
    print(Path(paths[1]).read_text())
    print("wrote " + ", ".join(map(str, paths)))


def cmd_quickstart(a) -> None:
    from edgeseg.quickstart import run_quickstart

    run_quickstart(a.out, iterations=a.iterations, minutes=a.minutes)


class _Parser(argparse.ArgumentParser):
    """argparse's errors in the one-line form of every other mistake (no usage block above them)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} -- see '{self.prog} --help'\n")


# --- Arguments. Options several verbs share are defined once here; each verb's function adds its own in the order
# its --help lists them (argparse prints in insertion order, so a shared helper is called where the option belongs).

_PLUGINS_HELP = ("comma-separated plugin libraries a TensorRT engine may load "
                 "(default: the ones its sidecar names, from edgeseg's plugin folder, hash-checked)")


def _data_args(s, default: str | None = None, help: str | None = None) -> None:
    """Data: the data set a verb reads (which of its images: _split_args)."""
    s.add_argument("--data", default=default, help=help)


def _split_args(s) -> None:
    """Which images of --data are scored."""
    s.add_argument("--split", default="val")
    s.add_argument("--limit", type=int)


def _out_arg(s, help: str | None = None, default: str | None = None) -> None:
    """Output: where the verb writes (a file or a folder, its help says which)."""
    s.add_argument("--out", default=default, help=help)


def _precision_arg(s, choices: tuple[str, ...], default: str) -> None:
    s.add_argument("--precision", choices=choices, default=default)


def _backend_arg(s, flag: str = "--backend") -> None:
    s.add_argument(flag, default="auto")


def _plugins_arg(s, help: str = _PLUGINS_HELP, metavar: str | None = None) -> None:
    """Plugins: the libraries an engine may load (Nothing runs code named by a file)."""
    s.add_argument("--plugins", metavar=metavar, help=help)


def _model_shape_args(s) -> None:
    """A zoo model's head and stem, for verbs that build one from its name."""
    s.add_argument("--num-classes", type=int, default=21)
    s.add_argument("--in-channels", type=int, default=3)


def _model_arg(s) -> None:
    s.add_argument("--model-arg", action="append", metavar="K=V")


def _budget_args(s) -> None:
    """Budgets: every verb refuses work estimated to need more memory (edgeseg.budgets)."""
    s.add_argument("--max-bytes", type=int, help="refuse inputs (data sets, images, model runs) estimated to need more "
                   "memory, before the work (default 1073741824, or $EDGESEG_MAX_BYTES)")


def zoo_args(s) -> None:
    s.add_argument("--size", type=int, default=512)
    _model_shape_args(s)


def train_args(s) -> None:
    s.add_argument("model", nargs="?", help="a zoo model (edgeseg zoo); not with --qat")
    _data_args(s, "lits", "lits, nuclei, synthetic, folder:<path> or coco:<images>,<json>[,<val json>]")
    s.add_argument("--epochs", type=int, default=50)
    s.add_argument("--iterations", type=int, help="stop after this many steps (reproducible on any machine)")
    s.add_argument("--minutes", type=float, help="time budget (the LR schedule spans it)")
    s.add_argument("--data-arg", action="append", metavar="K=V", help="data set option, e.g. context=1 for lits")
    s.add_argument("--batch-size", type=int, default=8)
    # the optimiser and its schedule (None: TrainConfig's default, or --recipe's)
    s.add_argument("--optimizer", choices=("sgd", "adamw"), help="default: adamw (sgd: momentum 0.9)")
    s.add_argument("--lr", type=float, help="default: 2e-3 for AdamW, 0.01 for SGD")
    s.add_argument("--weight-decay", type=float, help="default: 1e-4")
    s.add_argument("--schedule", choices=("poly", "step"), help="learning-rate decay over the budget (default: poly)")
    s.add_argument("--decay-steps", type=float, nargs="+", metavar="F",
                   help="step schedule: where the LR drops, as fractions of the budget (default: 2/3 and 8/9)")
    s.add_argument("--decay-factor", type=float, help="step schedule: the LR's factor at each drop (default: 0.1)")
    s.add_argument("--recipe", choices=("lpsnet",), help="a seed's training recipe (lpsnet: SGD momentum 0.9, weight "
                   "decay 1e-4, lr 0.01, step decay ×0.1, semantic loss weight 0.7 on COCO, 1.0 elsewhere); the "
                   "options above, where given, win")
    s.add_argument("--crop", type=int)
    s.add_argument("--weight-map", action="store_true", help="U-Net paper class balancing + border weights")
    _model_arg(s)
    s.add_argument("--seed", type=int, default=0)
    _out_arg(s, "checkpoint path (default runs/train/<model>_<data>.pt)")
    s.add_argument("--resume", action="store_true")
    # quantization-aware fine-tuning (edgeseg.quant.qat): the checkpoint names the model, data and recipe
    s.add_argument("--qat", metavar="CHECKPOINT", help="quantization-aware fine-tune of an 'edgeseg train' checkpoint "
                   "(fake INT8 where TensorRT puts Q/DQ; --iterations default 200, --lr default a tenth of the source's)")
    s.add_argument("--qat-onnx", metavar="PATH", help="the explicit-INT8 Q/DQ ONNX for TensorRT (default OUT_int8.onnx)")
    s.add_argument("--calib-images", type=int, default=32, help="--qat: training images its input ranges start from")


def eval_args(s) -> None:
    s.add_argument("model")
    _data_args(s, "lits")
    _split_args(s)
    _backend_arg(s)
    s.add_argument("--components", action="store_true",
                   help="also PQ of the per-pixel classes (a panoptic model: its semantic head) split into connected "
                   "components: the semantic-model baseline of panoptic work, on a data set with thing classes")
    _plugins_arg(s)
    _add_crf_args(s, "semantic models: each image's labels after DeepLab's fully connected CRF (pydensecrf2)")
    s.add_argument("--crf-search", action="store_true",
                   help="grid-search the dense CRF's w1, θα, θβ on this split (as DeepLab does on val) and print the best")


def export_args(s) -> None:
    s.add_argument("model", help="a checkpoint (.pt from 'edgeseg train', or a torchvision Mask R-CNN state dict) "
                   "or a zoo model name (random weights)")
    _out_arg(s)
    s.add_argument("--exporter", choices=("dynamo", "legacy"), help="default: dynamo (legacy with --crf)")
    s.add_argument("--flavour", choices=("portable", "tensorrt"), default="portable",
                   help="tensorrt: edgeseg plugin nodes for RoIAlign/deformable conv/mask pasting (ORT runs them as custom ops)")
    s.add_argument("--size", type=int, help="side of the sample input used for tracing")
    s.add_argument("--io", choices=("tensors", "frames"), default="tensors",
                   help="frames: a deploy graph (uint8 N×H×W×C frames of any size in; labels, compact instance outputs "
                   "or panoptic ids out, at the frame's size; pre- and post-processing inside), checked against the "
                   "float pipeline on the same frames")
    s.add_argument("--frame-order", choices=("RGB", "BGR"), default="RGB",
                   help="channel order of the frames a deploy graph takes (BGR: as OpenCV decodes)")
    _model_shape_args(s)
    _model_arg(s)
    _add_crf_args(s, "semantic softmax models: a local mean-field CRF (edgeseg.crf) behind the logits, in standard "
                  "ONNX ops; the logits output is refined (and at input size)", window=True)


def quantize_args(s) -> None:
    s.add_argument("model")
    _out_arg(s)
    _precision_arg(s, ("int8", "fp16"), "int8")
    # calibration
    s.add_argument("--calib-data", help="calibration images (their train split): a data set name or folder:<path> "
                   "(default: the data set the model was trained on, as its metadata records it)")
    s.add_argument("--calib-images", type=int, default=32)
    s.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax")
    # weight scales and the target they suit
    s.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel weight scales")
    s.add_argument("--full-range", action="store_true",
                   help="8-bit weights (TensorRT, VNNI or ARM targets); the default 7 bits avoids AVX2 saturation in ORT")
    s.add_argument("--target", choices=("onnxruntime", "tensorrt"), default="onnxruntime",
                   help="tensorrt: Q/DQ placed as TensorRT fuses it (NVIDIA ModelOpt): INT8 per-channel 8-bit weights, "
                   "FP32 biases, residual Adds fused, which 'edgeseg build --precision int8' takes; slower in ONNX "
                   "Runtime on the CPU")
    # the check before writing, and keeping accuracy
    s.add_argument("--check-images", type=int, default=8, metavar="N",
                   help="validation images the INT8 graph is checked on before it is written (else the calibration images)")
    s.add_argument("--force", action="store_true", help="write a graph that fails its check, as NAME.FAILED-CHECK.onnx")
    s.add_argument("--max-drop", type=float, metavar="PTS",
                   help="keep the fewest layers in float so INT8 drops at most PTS points (mIoU, mask AP or PQ proxy)")
    s.add_argument("--analyze", action="store_true",
                   help="per-layer INT8 sensitivity (each layer alone INT8, and alone float): a table and a bar chart")
    s.add_argument("--compare-calibration", action="store_true",
                   help="quantize with minmax, entropy and percentile and report which drops least")
    s.add_argument("--group-depth", type=int, metavar="N", help="group layers by the first N parts of their module path")
    s.add_argument("--out-dir", help="where --analyze writes its report (default: the model's folder)")


def build_args(s) -> None:
    s.add_argument("model", help="an edgeseg ONNX (INT8: the Q/DQ file of 'edgeseg quantize --target tensorrt')")
    _precision_arg(s, ("fp32", "fp16", "int8"), "fp16")
    _out_arg(s, "engine path (default MODEL_<precision>.engine)")
    s.add_argument("--shapes", help="trtexec style NAME:DIMS or NAME:MIN:OPT:MAX, e.g. input:1x3x256x256:1x3x512x512:4x3x1024x1024 "
                   "(default: from the metadata, sides 256/512/1024 aligned to size_divisor)")
    s.add_argument("--workspace", type=int, default=2048, metavar="MIB", help="builder workspace in MiB")
    s.add_argument("--timing-cache", metavar="FILE", help="read (if present) and update this timing cache")
    s.add_argument("--builder-optimization-level", type=int, metavar="N", help="0..5 (TensorRT's default 3)")
    s.add_argument("--version-compatible", action="store_true", help="runs on later TensorRT 10.x (lean runtime in the plan)")
    s.add_argument("--hardware-compatible", action="store_true", help="runs on any Ampere or newer GPU")
    s.add_argument("--dla-core", type=int, metavar="N", help="Jetson DLA core (FP16/INT8), GPU fallback for the rest")
    _plugins_arg(s, "plugin libraries (default: edgeseg's own for tensorrt-flavour graphs)", metavar="LIB[,LIB]")


def triton_args(s) -> None:
    s.add_argument("model", help="an edgeseg .onnx (ONNX Runtime backend) or an engine from 'edgeseg build' (TensorRT)")
    s.add_argument("--repo", required=True, help="the model repository folder")
    s.add_argument("--name", help="model name (default: the file's stem)")
    s.add_argument("--version", type=int, default=1)
    s.add_argument("--max-batch-size", type=int, help="default: 8 (an engine: its profile's max), 0 for fixed-batch graphs")
    s.add_argument("--instances", type=int, default=1, help="instance count")
    s.add_argument("--kind", choices=("gpu", "cpu"), default="gpu")
    s.add_argument("--no-dynamic-batching", action="store_true")
    s.add_argument("--max-queue-delay-us", type=int, default=100)


def serve_args(s) -> None:
    s.add_argument("model", help="an edgeseg .onnx (ONNX Runtime on the CPU) or an engine from 'edgeseg build' (TensorRT)")
    s.add_argument("--http-port", type=int, default=8000)
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--metrics-port", type=int, default=8002)
    s.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all; 127.0.0.1: this machine only)")
    s.add_argument("--name", help="model name (default: the file's stem)")
    s.add_argument("--max-batch", type=int, help="largest dynamic batch (default 8; 0 for fixed-batch graphs)")
    s.add_argument("--max-queue-delay-us", type=int, default=100, help="how long a request waits for others to batch with")
    s.add_argument("--no-dynamic-batching", action="store_true")
    s.add_argument("--instances", type=int, default=1, help="model instances (each its own process; they share the cores)")
    s.add_argument("--exit-timeout", type=int, default=30, metavar="S",
                   help="on SIGTERM, seconds to let requests in flight (and open client connections) finish")
    s.add_argument("--max-request-mb", type=float, default=64, help="larger inputs get an error response (default 64)")


def infer_args(s) -> None:
    s.add_argument("model")
    s.add_argument("images", nargs="+", metavar="SOURCE",
                   help="image files or folders (a label PNG and overlay each, in --out-dir), or one video file, "
                   "RTSP/HTTP URL, /dev/videoN or GStreamer pipeline (any string with '!') streamed through decode, "
                   "inference, drawing and encoding in parallel stages")
    # stream outputs and behaviour
    _out_arg(s, "stream: write the overlay video here (.mp4/.mkv/.mov/.avi) at the source's fps; "
             "finalised and renamed into place also on Ctrl-C, SIGTERM or a lost source")
    s.add_argument("--labels-dir", help="stream: a label PNG per frame (class ids; instance ids; panoptic RGB ids)")
    s.add_argument("--coco-json", help="stream, instance models: every frame's detections as COCO results")
    s.add_argument("--image-ids", metavar="JSON", help="images, instance models: the COCO JSON the images come from; "
                   "each <stem>_instances.json then carries its image id (default: the file stem)")
    s.add_argument("--summary", help="stream: the summary JSON (default: <out>.json, else <out-dir>/stream.json)")
    s.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the newest frame and drop the rest (default: on for URLs, cameras and pipelines, off "
                   "for files, which give every frame)")
    s.add_argument("--timeout", type=float, default=10.0, help="stream: seconds to wait for a URL or camera (default 10)")
    s.add_argument("--max-frames", type=int, help="stream: stop after this many source frames")
    # image outputs
    s.add_argument("--out-dir", default="runs/infer")
    _backend_arg(s)
    s.add_argument("--colour", action="store_true", help="also write the colour label map")
    _plugins_arg(s)
    s.add_argument("--max-pixels", type=int, help="refuse larger images and video frames before decoding them, "
                   "from the header (default 100000000, or $EDGESEG_MAX_PIXELS)")
    _add_crf_args(s, "image files, semantic models: labels after DeepLab's fully connected CRF (pydensecrf2)")


def check_args(s) -> None:
    s.add_argument("model", help="ONNX file")
    s.add_argument("--target", default="tensorrt", help="tensorrt (the newest vendored table), tensorrt=VERSION "
                   "(e.g. 10.3), or jetson (Orin, JetPack 6: TensorRT 10.3, sm_87, aarch64)")
    _plugins_arg(s, "the TensorRT plugin library to check the plugin nodes' creators in "
                 "(default: edgeseg's plugin folder's libedgeseg_trt.so)")


def parity_args(s) -> None:
    s.add_argument("reference", help="checkpoint (.pt) or FP32 ONNX")
    s.add_argument("candidate")
    _data_args(s)
    _split_args(s)
    _backend_arg(s)
    _backend_arg(s, "--reference-backend")
    _plugins_arg(s)


def bench_args(s) -> None:
    s.add_argument("items", nargs="*", metavar="MODEL",
                   help="what to benchmark, in one list: .onnx files (edgeseg's, or foreign with <model>.onnx.json), "
                   ".engine files, .pt checkpoints and zoo names (default: all of the zoo). --models and --checkpoints "
                   "are the same list, comma-separated, kept for older scripts")
    s.add_argument("--models", help="comma-separated, added to MODEL (zoo names or files; 'all': the whole zoo)")
    s.add_argument("--checkpoints", help="comma-separated, added to MODEL")
    _data_args(s, help="data set: accuracy (mIoU, foreground IoU, mask AP) of every variant on its validation "
               "split, INT8 calibrated on its training split; needed for model files (without it: zoo names with "
               "random weights, latency only)")
    s.add_argument("--calib-data", help="INT8 calibration images (their train split) when --data has no train/ split")
    s.add_argument("--variants", default="torch:fp32,onnxruntime:fp32,onnxruntime:int8",
                   help="backend:precision list. Backends: torch (eager, CPU, the reference), torch-compile (CPU), "
                   "torch-cuda and torch-cuda-compile (fp32, or fp16 by autocast), onnxruntime (fp32/fp16/int8), tensorrt "
                   "(fp32/fp16/int8). torch* only where there is a PyTorch model; tensorrt and torch-cuda* skipped with a "
                   "note where TensorRT / a CUDA device is missing")
    s.add_argument("--size", type=int, help="input side (default 512; with --data the first validation image's size)")
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--num-classes", type=int, default=21, help="zoo models without --data")
    s.add_argument("--calib-images", type=int, default=4)
    s.add_argument("--examples", type=int, default=3, help="validation images in <name>_examples.png (with --data)")
    # timing and profiling (edgeseg.bench)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--repeats", type=int, default=10)
    s.add_argument("--profile", action="store_true",
                   help="per-layer time of each variant (ONNX Runtime's profiler, TensorRT's IProfiler, torch.profiler) "
                   "in a pass of its own after the timed runs: top op types and layers in the report")
    s.add_argument("--stages", action="store_true",
                   help="with --profile: instance and panoptic graphs (ONNX Runtime variants) cut into their stages "
                   "(backbone, RPN, RoIAlign, heads, paste; network and merge), each timed alongside the whole graph")
    _out_arg(s, default="runs/bench")
    s.add_argument("--name", default="bench")


def quickstart_args(s) -> None:
    _out_arg(s, default="runs/quickstart")
    s.add_argument("--iterations", type=int, help="training steps (default 300, about 4 min on 2 cores)")
    s.add_argument("--minutes", type=float, help="also stop training after this many minutes")


def build_parser() -> argparse.ArgumentParser:
    import edgeseg

    p = _Parser(prog="edgeseg", description="Export, quantize, run and benchmark segmentation models.")
    p.add_argument("--version", action="version", version=f"edgeseg {edgeseg.__version__}")
    sub = p.add_subparsers(dest="verb", required=True)
    # verb, its one-line help, its arguments, its command. Read here (not at import) so a test's monkeypatched
    # cmd_* is the one that runs. A new verb: one row, one *_args function, one cmd_*.
    verbs = (
        ("zoo", "list every model with parameters and GFLOPs", zoo_args, cmd_zoo),
        ("train", "train a zoo model on a data set", train_args, cmd_train),
        ("eval", "pixel acc, mean acc, mIoU, f.w. IoU of a checkpoint or ONNX", eval_args, cmd_eval),
        ("export", "checkpoint or zoo name -> ONNX (with metadata), checked against PyTorch", export_args, cmd_export),
        ("quantize", "FP32 ONNX -> INT8 Q/DQ (calibrated) or FP16", quantize_args, cmd_quantize),
        ("build", "ONNX -> TensorRT engine (+ sidecar); needs TensorRT and an NVIDIA GPU", build_args, cmd_build),
        ("triton", "ONNX or engine -> Triton Inference Server model repository", triton_args, cmd_triton),
        ("serve", "serve a model on a Triton Inference Server (HTTP, gRPC, metrics) until SIGTERM", serve_args, cmd_serve),
        ("infer", "image(s) -> label PNG + colour overlay; a video, stream or camera -> overlay video", infer_args,
         cmd_infer),
        ("check", "an ONNX graph against TensorRT's ONNX parser (ops, opsets, dtypes, plugin nodes and the plugin "
         "library's creators), without TensorRT or a GPU; exit 2 on a problem", check_args, cmd_check),
        ("parity", "a candidate (ONNX, any precision) against the reference, by the tolerance table", parity_args,
         cmd_parity),
        ("bench", "models × backends × precisions: latency, memory, size; with --data accuracy, agreement and example "
         "predictions (JSON + markdown + PNGs)", bench_args, cmd_bench),
        ("quickstart", "train a U-Net on LiTS, export, quantize, compare backends, write a report", quickstart_args,
         cmd_quickstart),
    )
    for verb, help, add_args, fn in verbs:
        s = sub.add_parser(verb, help=help)
        add_args(s)
        _budget_args(s)
        s.set_defaults(fn=fn)
    return p


class Terminated(SystemExit):
    """SIGTERM, raised where Python was when the signal came, so ``finally`` blocks (temporary files) run."""


_TERMINATING = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _on_sigterm(signum, frame):
    raise Terminated(128 + signum)


def _signal_in(error: BaseException):
    """The KeyboardInterrupt or Terminated somewhere in ``error``'s chain of causes, else None."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        if isinstance(e, (KeyboardInterrupt, Terminated)):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    from edgeseg.bench import set_timing_environment

    set_timing_environment()
    args = build_parser().parse_args(argv)
    import threading

    from edgeseg import budgets

    in_main_thread = threading.current_thread() is threading.main_thread()
    # every signal that ends a run (not only SIGTERM) unwinds it, so temporary files are removed
    previous = {s: signal.signal(s, _on_sigterm) for s in _TERMINATING} if in_main_thread else {}
    try:
        budgets.set_limit("bytes", getattr(args, "max_bytes", None))
        args.fn(args)
    except EdgeSegError as e:
        print(f"edgeseg {args.verb}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_code
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        print(f"edgeseg {args.verb}: error: {e.strerror}: {e.filename} -- check the path and its permissions", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgeseg {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Terminated as e:
        print(f"edgeseg {args.verb}: terminated", file=sys.stderr)
        return int(e.code)
    except Exception as e:  # a library that wraps the signal in its own error (torch's exporter does)
        cause = _signal_in(e)
        if cause is None:
            raise
        print(f"edgeseg {args.verb}: {'interrupted' if isinstance(cause, KeyboardInterrupt) else 'terminated'}",
              file=sys.stderr)
        return 130 if isinstance(cause, KeyboardInterrupt) else int(cause.code)
    finally:
        budgets.set_limit("bytes", None)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
