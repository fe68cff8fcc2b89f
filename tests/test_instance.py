"""Instance segmentation: Mask R-CNN with its whole post-processing in the graph (fixed-size outputs),
held against torchvision's own per-image pipeline on the same weights, exported in both flavours and
checked in ONNX Runtime by matching detections, never slots."""
import numpy as np
import pytest
import torch
import torchvision

import edgeseg
from edgeseg.metrics.instance import box_iou, match_detections
from edgeseg.models import create, list_models
from edgeseg.models.detection import INSTANCE_OUTPUTS, MaskRCNN
from edgeseg.models.detection.maskrcnn import torchvision_pipeline
from edgeseg.ops.native import plugin_dir
from edgeseg.ops.nms import nms_keep


def assert_matches_torchvision(model: MaskRCNN, x):
    model.eval()
    with torch.no_grad():
        ours = model(x)
        theirs = torchvision_pipeline(model.net, x)
    assert set(ours) == set(INSTANCE_OUTPUTS)
    n, d = x.shape[0], model.max_detections
    assert ours["boxes"].shape == (n, d, 4) and ours["masks"].shape == (n, d, *x.shape[-2:])
    assert ours["labels"].dtype == torch.int64 and ours["num_detections"].dtype == torch.int64
    for i, t in enumerate(theirs):
        k = int(ours["num_detections"][i])
        assert k == len(t["boxes"])
        m = match_detections(ours["boxes"][i, :k].numpy(), ours["scores"][i, :k].numpy(), ours["labels"][i, :k].numpy(),
                             t["boxes"].numpy(), t["labels"].numpy())
        assert len(m.pairs) == k and (k == 0 or m.ious.min() > 0.999)
        for a, b in m.pairs:
            assert abs(float(ours["scores"][i, a]) - float(t["scores"][b])) < 1e-5
            assert (ours["masks"][i, a] - t["masks"][b, 0]).abs().max() < 1e-4
        # slots past num_detections are zero
        assert ours["scores"][i, k:].abs().sum() == 0 and ours["boxes"][i, k:].abs().sum() == 0
        assert ours["masks"][i, k:].abs().sum() == 0 and (ours["labels"][i, k:] == 0).all()


def small(name="maskrcnn_resnet18_fpn", **kw):
    torch.manual_seed(0)
    return create(name, num_classes=4, in_channels=3, **{"max_detections": 12, "proposals": 150, **kw})


def test_zoo_lists_instance_models_apart():
    assert {"maskrcnn_resnet18_fpn", "maskrcnn_resnet50_fpn"} <= set(list_models("instance"))
    assert not set(list_models("instance")) & set(list_models())  # the default list is the semantic zoo


def test_nms_keep_equals_torchvision_batched_nms():
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(2, 300, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(2, 300, 2, generator=g) * 30 + 1], -1)
    scores = torch.rand(2, 300, generator=g)
    groups = torch.randint(0, 3, (2, 300), generator=g)
    keep = nms_keep(boxes, scores, 0.5, groups=groups)
    for i in range(2):
        want = torchvision.ops.batched_nms(boxes[i], scores[i], groups[i], 0.5)
        assert set(keep[i].nonzero().flatten().tolist()) == set(want.tolist())


@pytest.mark.parametrize("size", [(128, 160), (96, 64), (100, 150)])  # 100×150: zero padding, boxes clipped to the image
def test_maskrcnn_matches_torchvision_pipeline(size):
    assert_matches_torchvision(small(), torch.randn(2, 3, *size))


def test_maskrcnn_zero_and_full_detections():
    model = small()
    with torch.no_grad():  # background wins everywhere: no detection passes the 0.05 score threshold
        model.net.roi_heads.box_predictor.cls_score.bias[0] = 50.0
    out = model.eval()(torch.randn(1, 3, 128, 128))
    assert int(out["num_detections"][0]) == 0 and out["masks"].abs().sum() == 0
    assert_matches_torchvision(model, torch.randn(1, 3, 128, 128))
    full = small()(torch.randn(1, 3, 128, 128))
    assert int(full["num_detections"][0]) == 12  # random weights: every slot filled


def test_torchvision_maskrcnn_brought_as_it_is():
    for builder in (torchvision.models.detection.maskrcnn_resnet50_fpn, torchvision.models.detection.maskrcnn_resnet50_fpn_v2):
        torch.manual_seed(0)
        net = builder(weights=None, weights_backbone=None, num_classes=3, box_detections_per_img=10,
                      rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=100)
        assert_matches_torchvision(MaskRCNN.from_torchvision(net), torch.randn(1, 3, 96, 128))


def test_maskrcnn_trains_with_torchvision_losses():
    model = small().train()
    x = torch.randn(2, 3, 64, 64)
    masks = torch.zeros(2, 1, 64, 64, dtype=torch.uint8)
    masks[:, :, 10:30, 12:40] = 1
    targets = [{"boxes": torch.tensor([[12.0, 10.0, 40.0, 30.0]]), "labels": torch.tensor([2]), "masks": masks[i]}
               for i in range(2)]
    losses = model(x, targets)
    assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"} <= set(losses)
    sum(losses.values()).backward()
    assert model.net.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("flavour", ["portable", "tensorrt"])
def test_maskrcnn_exports_and_matches_in_onnxruntime(flavour, tmp_path, zoo_export):
    """Both flavours, checked by edgeseg's export check (two input sizes, detections matched by IoU). The zoo model
    as created with 5 classes: the same export as issue 19's matrix (tests/test_zoo_matrix.py), shared with it."""
    if flavour == "tensorrt" and not (plugin_dir() / "libedgeseg_ort.so").is_file():
        pytest.skip("libedgeseg_ort.so not built (scripts/build_plugins.sh could not fetch ONNX Runtime's headers)")
    report = zoo_export("maskrcnn_resnet18_fpn", flavour, num_classes=5)
    assert report.passed, report.summary()
    assert report.kind == "instance" and report.matched == report.detections > 0
    d = report.meta.max_detections
    assert report.meta.task == "instance" and d == 100  # the builder's default
    from edgeseg.runtime import open_session

    session = open_session(report.path)
    out = session.run(np.random.default_rng(0).standard_normal((2, 3, 64, 96)).astype(np.float32))
    assert out["masks"].shape == (2, d, 64, 96) and out["labels"].dtype == np.int64
    if flavour == "portable":  # infer on an image whose size is not a multiple of 32: padding undone
        import json

        from PIL import Image

        from edgeseg.cli import main
        Image.fromarray((np.random.default_rng(1).random((50, 70, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
        assert main(["infer", str(report.path), str(tmp_path / "a.png"), "--out-dir", str(tmp_path / "out")]) == 0
        results = json.loads((tmp_path / "out" / "a_instances.json").read_text())
        assert len(results) == d and all(r["bbox"][0] + r["bbox"][2] <= 70.001 for r in results)
        assert np.asarray(Image.open(tmp_path / "out" / "a_ids.png")).shape == (50, 70)
        assert np.asarray(Image.open(tmp_path / "out" / "a_instances.png")).shape == (50, 70, 3)
        # images from a COCO set: results carry its image and category ids, so pycocotools' loadRes takes them
        import contextlib
        import io

        from pycocotools.coco import COCO
        gt = {"images": [{"id": 42, "file_name": "val/a.png", "height": 50, "width": 70}], "annotations": [],
              "categories": [{"id": c, "name": str(c)} for c in (9, 5, 7, 3)]}
        (tmp_path / "gt.json").write_text(json.dumps(gt))
        assert main(["infer", str(report.path), str(tmp_path / "a.png"), "--out-dir", str(tmp_path / "ids"),
                     "--image-ids", str(tmp_path / "gt.json")]) == 0
        results = json.loads((tmp_path / "ids" / "a_instances.json").read_text())
        assert {r["image_id"] for r in results} == {42} and {r["category_id"] for r in results} <= {3, 5, 7, 9}
        with contextlib.redirect_stdout(io.StringIO()):
            assert len(COCO(str(tmp_path / "gt.json")).loadRes(results).anns) == len(results)


def test_match_detections_is_by_overlap_not_slot():
    ref = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    cand = ref[::-1].copy()
    m = match_detections(ref, np.array([0.9, 0.8]), np.array([1, 1]), cand, np.array([1, 1]))
    assert sorted(m.pairs) == [(0, 1), (1, 0)] and m.unmatched_reference == 0
    assert box_iou(ref, cand)[0, 1] == 1.0
    other_label = match_detections(ref, np.array([0.9, 0.8]), np.array([1, 2]), cand, np.array([1, 1]))
    assert other_label.unmatched_reference == 1


def test_mask_ap_equals_pycocotools_called_directly(tmp_path):
    """edgeseg's evaluator against an independent pycocotools run on the same predictions, through files."""
    import json

    from pycocotools import mask as rle
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from edgeseg.metrics.instance import InstanceEvaluator

    rng = np.random.default_rng(0)
    ev = InstanceEvaluator(["background", "a", "b"])
    images, anns, results = [], [], []
    for image_id in (1, 2, 3):
        gt = np.zeros((3, 40, 50), bool)
        labels = np.array([1, 2, 1])
        for k in range(3):
            y, x = rng.integers(0, 25), rng.integers(0, 35)
            gt[k, y:y + rng.integers(5, 15), x:x + rng.integers(5, 15)] = True
        pred_masks = np.stack([np.roll(g, rng.integers(-2, 3), axis=1) for g in gt]).astype(np.float32) * 0.9
        boxes = np.array([[np.nonzero(m)[1].min(), np.nonzero(m)[0].min(), np.nonzero(m)[1].max() + 1,
                           np.nonzero(m)[0].max() + 1] for m in pred_masks > 0.5], np.float32)
        scores = rng.random(3).astype(np.float32)
        pred_labels = np.array([1, 2, 2])  # one wrong label
        ev.add(gt, labels, {"boxes": boxes, "scores": scores, "labels": pred_labels, "masks": pred_masks})
        images.append({"id": image_id, "height": 40, "width": 50})
        for k in range(3):
            code = rle.encode(np.asfortranarray(gt[k].astype(np.uint8)))
            code["counts"] = code["counts"].decode()
            ys, xs = np.nonzero(gt[k])
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(labels[k]), "iscrowd": 0,
                         "area": int(gt[k].sum()), "segmentation": code,
                         "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]})
            code = rle.encode(np.asfortranarray((pred_masks[k] >= 0.5).astype(np.uint8)))
            code["counts"] = code["counts"].decode()
            b = boxes[k].tolist()
            results.append({"image_id": image_id, "category_id": int(pred_labels[k]), "score": float(scores[k]),
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "segmentation": code})
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                  "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    ours = ev.scores()
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        gt_coco = COCO(str(tmp_path / "gt.json"))
        dt_coco = gt_coco.loadRes(str(tmp_path / "dt.json"))
        for kind in ("bbox", "segm"):
            e = COCOeval(gt_coco, dt_coco, kind)
            e.evaluate(), e.accumulate(), e.summarize()
            assert ours[kind].ap == pytest.approx(e.stats[0]) and ours[kind].ap50 == pytest.approx(e.stats[1])
    assert 0 < ours["segm"].ap < 1


def test_maskrcnn_trains_on_nuclei_instances_and_checkpoints(tmp_path):
    """edgeseg train's instance path: instance ids ride through the augmentation, torchvision's losses train."""
    from edgeseg.models.checkpoint import load_checkpoint
    from edgeseg.train import TrainConfig, instance_targets, train

    cfg = TrainConfig(model="maskrcnn_resnet18_fpn", dataset="nuclei", iterations=2, batch_size=2, crop=64,
                      model_args={"proposals": 50, "max_detections": 10})
    _, state = train(cfg, tmp_path / "m.pt", progress=False, log=lambda *a: None)
    assert state["iteration"] == 2 and np.isfinite(state["losses"][-1])
    model, payload = load_checkpoint(tmp_path / "m.pt")
    assert payload["meta"]["task"] == "instance" and model.max_detections == 10
    # id·256 + class masks -> one target per instance, box around its pixels
    m = torch.zeros(1, 8, 8, dtype=torch.int64)
    m[0, 1:3, 2:5] = 3 * 256 + 1
    m[0, 5:7, 5:6] = 7 * 256 + 2
    (t,) = instance_targets(m)
    assert t["boxes"].tolist() == [[2, 1, 5, 3], [5, 5, 6, 7]] and t["labels"].tolist() == [1, 2]
    assert t["masks"].shape == (2, 8, 8) and int(t["masks"].sum()) == 8


def spread_scores(net, seed=0):
    """Random heads score every candidate alike (near-ties that any rounding reorders) or, scaled up, all
    at 1.0; trained ones do neither. Class logits get a spread of about 3 whatever the head's scale."""
    g = torch.Generator().manual_seed(seed)
    seen = []
    hook = net.roi_heads.box_head.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        torchvision_pipeline(net.eval(), torch.randn(1, 3, 128, 128, generator=g))
        hook.remove()
        w = net.roi_heads.box_predictor.cls_score.weight
        w.copy_(torch.randn(w.shape, generator=g) * 3.0 / (seen[0].norm(dim=1).mean() + 1e-6))
    return net


@pytest.mark.parametrize("builder,flavour", [("maskrcnn_resnet50_fpn", "portable"), ("maskrcnn_resnet50_fpn_v2", "tensorrt")])
def test_torchvision_maskrcnn_through_export_onnx(builder, flavour, tmp_path):
    """A torchvision model object goes straight in; ORT's detections match torchvision's own eager pipeline."""
    if flavour == "tensorrt" and not (plugin_dir() / "libedgeseg_ort.so").is_file():
        pytest.skip("libedgeseg_ort.so not built (scripts/build_plugins.sh could not fetch ONNX Runtime's headers)")
    torch.manual_seed(0)
    net = spread_scores(getattr(torchvision.models.detection, builder)(
        weights=None, weights_backbone=None, num_classes=5, box_detections_per_img=20,
        rpn_pre_nms_top_n_test=60, rpn_post_nms_top_n_test=60)).eval()
    report = edgeseg.export_onnx(net, tmp_path / "tv.onnx", flavour=flavour)
    assert report.passed and report.matched == report.detections > 0, report.summary()
    meta = report.meta
    assert meta.task == "instance" and meta.model == "torchvision_maskrcnn" and meta.num_classes == 5
    assert meta.mean == pytest.approx(list(net.transform.image_mean)) and meta.max_detections == 20
    from edgeseg.runtime import open_session

    from edgeseg.metrics.instance import detections
    from edgeseg.parity import held_box_iou
    from edgeseg.runtime.prepost import preprocess
    from edgeseg.tolerances import tolerance

    session = open_session(tmp_path / "tv.onnx")
    g = torch.Generator().manual_seed(1)
    for size in ((300, 400), (320, 416)):  # 300×400: torchvision pads with zeros and clips boxes to the image
        image = torch.rand(3, *size, generator=g)
        x, hw = preprocess(image.numpy(), meta)
        ours = detections(session.run(x), 0, hw)
        theirs = torchvision_eager(net, image)
        k = len(ours["boxes"])
        assert k == len(theirs["boxes"]) > 0
        m = match_detections(ours["boxes"], ours["scores"], ours["labels"], theirs["boxes"].numpy(), theirs["labels"].numpy())
        # random heads give many boxes a fraction of a pixel tall: those are held by corners (the tolerance table's rule)
        held = [held_box_iou(theirs["boxes"][b].numpy(), ours["boxes"][a], iou, tolerance("fp32", "instance"))
                for (a, b), iou in zip(m.pairs, m.ious)]
        assert len(m.pairs) == k and (np.array(held) >= 0.99).sum() >= 0.95 * k, (size, m.ious, held)


def torchvision_eager(net, image):
    """torchvision's own forward (its transform: normalise, zero padding, clipping, paste), its resize made the identity."""
    h, w = image.shape[-2:]
    transform = net.transform
    saved = transform.min_size, transform.max_size
    transform.min_size, transform.max_size = (min(h, w),), max(h, w)  # scale 1: bilinear resize to the same size
    try:
        with torch.no_grad():
            return net.eval()([image])[0]
    finally:
        transform.min_size, transform.max_size = saved


def test_torchvision_state_dict_is_recognised(tmp_path):
    """`edgeseg export w.pth`: a torchvision state dict (bare or under "model") is read as its variant;
    anything else is refused with one line."""
    from edgeseg.errors import ModelError
    from edgeseg.models.checkpoint import load_model_file

    torch.manual_seed(0)
    net = torchvision.models.detection.maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91).eval()
    torch.save({"model": net.state_dict(), "epoch": 3}, tmp_path / "w.pth")
    model, payload = load_model_file(tmp_path / "w.pth")
    assert payload is None  # not edgeseg's own: no config/meta payload
    assert model.edgeseg_config["name"] == "maskrcnn_resnet50_fpn_v2" and model.max_detections == 100
    assert model.class_names[1] == "person" and len(model.class_names) == 91  # torchvision's COCO names
    for a, b in zip(model.net.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)
    # --model-arg at export: torchvision's settings a state dict does not hold (score threshold, detections per image)
    tuned, _ = load_model_file(tmp_path / "w.pth", {"box_score_thresh": 0.3, "box_detections_per_img": 7})
    assert tuned.max_detections == 7 and tuned.net.roi_heads.score_thresh == 0.3
    with pytest.raises(ModelError, match="base_width=3 is not a torchvision Mask R-CNN setting"):
        load_model_file(tmp_path / "w.pth", {"base_width": 3})
    from edgeseg.cli import main
    assert main(["export", str(tmp_path / "w.pth"), "--model-arg", "box_score_thresh=7", "--out", str(tmp_path / "x.onnx")]) == 2
    # parity, eval and infer open the state dict as export does (the torch backend)
    from edgeseg.runtime import open_session
    session = open_session(tmp_path / "w.pth", "torch")
    assert session.meta.task == "instance" and session.meta.num_classes == 91 and session.meta.model == "maskrcnn_resnet50_fpn_v2"
    assert session.run(np.zeros((1, 3, 64, 80), np.float32))["masks"].shape == (1, 100, 64, 80)
    torch.save({"roi_heads.box_predictor.cls_score.weight": torch.zeros(3, 8)}, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match="do not fit torchvision's maskrcnn_resnet50_fpn"):
        load_model_file(tmp_path / "bad.pth")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="not an edgeseg checkpoint"):
        load_model_file(tmp_path / "other.pth")


def test_eval_on_coco_json_equals_pycocotools_on_the_file(tmp_path):
    """eval on a COCO set scores against the JSON's own annotations (overlapping polygons), so its AP
    is pycocotools' run directly on the file with the same predictions, whatever the id map draws on top."""
    import contextlib
    import io
    import json

    from PIL import Image
    from pycocotools import mask as rle
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from edgeseg.data import get_dataset
    from edgeseg.evaluate import evaluate_instances
    from edgeseg.export.metadata import ModelMeta

    h, w = 40, 50
    polys = {1: [[[5, 5, 35, 5, 35, 30, 5, 30]], [[20, 15, 45, 15, 45, 38, 20, 38]]],   # the two overlap
             2: [[[2, 2, 30, 2, 30, 20, 2, 20]], [[10, 8, 25, 8, 25, 35, 10, 35]]]}
    cats = {1: 7, 2: 3}  # non-contiguous category ids
    anns, images, preds = [], [], {}
    for image_id, shapes in polys.items():
        Image.fromarray(np.full((h, w, 3), 100 * image_id, np.uint8)).save(tmp_path / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": h, "width": w})
        masks = []
        for k, poly in enumerate(shapes):
            m = rle.decode(rle.merge(rle.frPyObjects(poly, h, w))).astype(bool)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cats[k + 1], "iscrowd": 0,
                         "segmentation": poly, "area": float(m.sum()), "bbox": [float(poly[0][0]), float(poly[0][1]),
                                                                                float(poly[0][2] - poly[0][0]), float(poly[0][5] - poly[0][1])]})
            masks.append(m)
        masks.append(np.roll(masks[0], 2, axis=1))  # a second guess at the first object, scored lower
        labels = np.array([1, 2, 1])
        boxes = np.array([[np.nonzero(m)[1].min(), np.nonzero(m)[0].min(), np.nonzero(m)[1].max() + 1,
                           np.nonzero(m)[0].max() + 1] for m in masks], np.float32)
        preds[image_id] = {"boxes": boxes, "scores": np.array([0.9, 0.8, 0.3], np.float32), "labels": labels,
                           "masks": np.stack(masks).astype(np.float32)}
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                  "categories": [{"id": 3, "name": "b"}, {"id": 7, "name": "a"}]}))
    ds = get_dataset(f"coco:{tmp_path},{tmp_path / 'gt.json'}", "val")
    assert ds.info.class_names == ("background", "b", "a")  # labels by category id: 3 -> 1, 7 -> 2
    label_of = {7: 2, 3: 1}
    order = [im["id"] for im in ds.coco["images"]]

    class Replay:  # a session that answers each image with its fixed predictions, in the data set's order
        backend, precision = "replay", "fp32"
        meta = ModelMeta(model="replay", task="instance", class_names=["background", "b", "a"], size_divisor=1,
                         max_detections=3)
        calls = iter(order)

        def run(self, x):
            p = preds[next(self.calls)]
            to_model = np.array([label_of[cats[int(c)]] for c in p["labels"]])
            return {"boxes": p["boxes"][None], "scores": p["scores"][None], "labels": to_model[None],
                    "masks": p["masks"][None], "num_detections": np.array([3])}

    ours = evaluate_instances(Replay(), ds, progress=False)
    results = []
    for image_id, p in preds.items():
        for box, score, label, m in zip(p["boxes"], p["scores"], p["labels"], p["masks"]):
            code = rle.encode(np.asfortranarray(m.astype(np.uint8)))
            code["counts"] = code["counts"].decode()
            results.append({"image_id": image_id, "category_id": cats[int(label)], "score": float(score),
                            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                            "segmentation": code})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        dt = gt.loadRes(results)
        for kind in ("bbox", "segm"):
            e = COCOeval(gt, dt, kind)
            e.evaluate(), e.accumulate(), e.summarize()
            assert ours[kind].ap == pytest.approx(e.stats[0]) and ours[kind].ap75 == pytest.approx(e.stats[2]), kind
    assert ours["segm"].ap == pytest.approx(1.0)  # each prediction is its polygon, overlap included


def test_degenerate_boxes_are_held_by_corners_not_iou():
    """A box 0.02 px tall loses IoU to any rounding: the tolerance table holds such pairs by their corners."""
    from edgeseg.parity import judge_instances
    from edgeseg.tolerances import DEGENERATE_BOX_PX

    def found(boxes):
        boxes = np.array(boxes, np.float32)
        return {"boxes": boxes, "scores": np.array([0.9] * len(boxes), np.float32), "labels": np.ones(len(boxes), np.int64),
                "masks": np.zeros((len(boxes), 8, 8), np.float32)}

    flat = found([[10.0, 20.0, 40.0, 20.02], [0, 0, 30, 30]])
    moved = found([[10.0, 20.005, 40.0, 20.02], [0, 0, 30, 30]])   # IoU 0.75, corners within 0.005 px
    assert 0.02 < DEGENERATE_BOX_PX
    report = judge_instances([(flat, moved)], "fp32")
    assert report.passed, report.summary()
    far = found([[10.0, 20.0, 40.5, 20.02], [0, 0, 30, 30]])        # a corner 0.5 px off: still refused
    assert not judge_instances([(flat, far)], "fp32").passed
    wide = found([[10, 10, 30, 30], [0, 0, 30, 30]])                  # a real box: by IoU, as before
    assert not judge_instances([(wide, found([[10, 10, 30, 30.5], [0, 0, 30, 30]]))], "fp32").passed


def test_int8_with_ground_truth_is_held_to_the_mask_ap_drop():
    """With ground truth, INT8 is judged by what it costs in mask AP: extra low-scoring detections fail the
    agreement rows (matched fraction) but cost no AP; a mask moved off its instance costs AP and fails. FP32
    stays held to agreement too."""
    from edgeseg.metrics.instance import instance_truth
    from edgeseg.parity import judge_instances

    ids = np.zeros((32, 32), int)
    ids[2:10, 2:10], ids[15:25, 15:28] = 1, 2
    truth = instance_truth(ids, (ids > 0).astype(int))
    assert truth.masks.shape == (2, 32, 32) and list(truth.labels) == [1, 1]

    def found(boxes, masks, scores):
        return {"boxes": np.array(boxes, np.float32), "scores": np.array(scores, np.float32),
                "labels": np.ones(len(boxes), np.int64), "masks": np.stack(masks).astype(np.float32)}

    boxes, masks = [[2, 2, 10, 10], [15, 15, 28, 25]], [ids == 1, ids == 2]
    ref = found(boxes, masks, [0.9, 0.8])
    stray = np.zeros((32, 32), bool)
    stray[28:31, 0:3] = True
    extra = found(boxes + [[0, 28, 3, 31], [0, 28, 3, 31]], masks + [stray, stray], [0.9, 0.8, 0.06, 0.05])
    names = ["background", "nucleus"]
    int8 = judge_instances([(ref, extra, truth)], "int8", class_names=names)
    assert int8.passed and int8.matched == 2 and int8.detections == 4, int8.summary()
    assert int8.mask_ap_reference == pytest.approx(1.0) and int8.mask_ap_candidate == pytest.approx(1.0)
    assert not judge_instances([(ref, extra)], "int8").passed         # no ground truth: the agreement rows
    assert not judge_instances([(ref, extra, truth)], "fp32", class_names=names).passed
    moved = found(boxes, [ids == 1, np.roll(ids == 2, 4, axis=1)], [0.9, 0.8])
    report = judge_instances([(ref, moved, truth)], "int8", class_names=names)
    assert not report.passed and "mask AP" in report.failures[0], report.summary()


# ~2.5 min on 2 cores (default 1000 proposals, D = 100): the portable flavour only; the tensorrt flavour's surgery is
# held on the same graph by test_maskrcnn_exports_and_matches_in_onnxruntime.
@pytest.mark.slow
def test_zoo_maskrcnn_resnet50_passes_its_export_check(tmp_path):
    """Issue 19.3: the zoo's maskrcnn_resnet50_fpn as created (num_classes=3, seed 0) passes edgeseg.export_onnx's own
    check (before: 'a matched box IoU 0.9869 < 0.99', and only m.failed.onnx was left)."""
    torch.manual_seed(0)
    report = edgeseg.export_onnx(create("maskrcnn_resnet50_fpn", num_classes=3), tmp_path / "m.onnx")
    assert report.passed and report.detections > 0 and (tmp_path / "m.onnx").is_file(), report.summary()
