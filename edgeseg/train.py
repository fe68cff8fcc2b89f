"""Training: SGD or AdamW, poly or step learning-rate decay, flip/scale/crop augmentation, optional U-Net
weight map, progress bar, atomic checkpoints every epoch, resume.

The budget is epochs, iterations or minutes (whichever ends first); the schedule runs over that budget, so
a time-boxed run still anneals to zero (poly) or passes its decay steps (step, placed at fractions of the
budget); an optional linear warm-up (``warmup_iters``) precedes it. ``recipe`` names a paper's recipe
(``RECIPES``), which fills the fields left at their defaults.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from edgeseg.data import IGNORE_INDEX, SegDataset, get_dataset, normalize
from edgeseg.data.transforms import TrainAugment
from edgeseg.errors import EdgeSegError
from edgeseg.models import create, model_task
from edgeseg.models.checkpoint import read_checkpoint, save_checkpoint


@dataclass
class TrainConfig:
    model: str
    dataset: str = "lits"
    model_args: dict = field(default_factory=dict)
    dataset_args: dict = field(default_factory=dict)
    epochs: int = 1000
    iterations: int | None = None  # a fixed number of steps: the same result on a fast or a slow machine
    minutes: float | None = None
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float | None = None  # default: 2e-3 for AdamW, 0.01 for SGD
    weight_decay: float = 1e-4
    schedule: str = "poly"  # "poly": lr·(1 − t)^poly_power; "step": lr·decay_factor^(decay_steps passed), t the budget spent
    poly_power: float = 0.9
    decay_steps: tuple[float, ...] = (2 / 3, 8 / 9)  # step schedule: where the LR drops, as fractions of the budget
    decay_factor: float = 0.1
    recipe: str | None = None  # a paper's recipe (RECIPES): fills the fields left at their defaults
    warmup_iters: int = 0  # linear learning-rate warm-up from 0.001× over the first steps (Mask R-CNN's SGD recipe)
    crop: int | None = None
    scale: tuple[float, float] = (0.75, 1.25)
    vflip: bool = False
    weight_map: bool = False
    dice: bool = False  # add the soft Dice loss of the foreground classes to the cross-entropy
    seed: int = 0


# The seeds' training recipes. LPSNet (its seed note, "Training method"): multi-task SGD, momentum 0.9, weight
# decay 1e-4, initial learning rate 0.01, step decay by 0.1, semantic-head loss weight 0.7 on COCO (1.0 on
# Cityscapes, LPSNet's default). The note gives no step points: ``decay_steps``' default, 2/3 and 8/9 of the
# budget, is the usual "1x" detection schedule's placement. (The paper's batch of 16 is a multi-GPU one: the
# batch size stays the caller's.)
RECIPES: dict[str, dict] = {
    "lpsnet": {"optimizer": "sgd", "lr": 0.01, "weight_decay": 1e-4, "schedule": "step", "decay_factor": 0.1},
}


def apply_recipe(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its recipe's values in the fields still at their defaults (a field given another value keeps it),
    and the recipe's semantic loss weight in ``model_args`` for a model that takes one; checks the schedule."""
    if cfg.recipe is not None:
        if cfg.recipe not in RECIPES:
            raise EdgeSegError(f"unknown training recipe '{cfg.recipe}'", f"use one of: {', '.join(RECIPES)}")
        defaults = {f.name: f.default for f in fields(TrainConfig)}
        cfg = replace(cfg, **{k: v for k, v in RECIPES[cfg.recipe].items() if getattr(cfg, k) == defaults[k]})
        if cfg.recipe == "lpsnet" and "semantic_loss_weight" in _builder_args(cfg.model):
            weight = 0.7 if cfg.dataset.startswith("coco") else 1.0
            cfg = replace(cfg, model_args={"semantic_loss_weight": weight, **cfg.model_args})
    if cfg.optimizer not in ("sgd", "adamw"):
        raise EdgeSegError(f"unknown optimizer '{cfg.optimizer}'", "use 'sgd' or 'adamw'")
    if cfg.schedule not in ("poly", "step"):
        raise EdgeSegError(f"unknown learning-rate schedule '{cfg.schedule}'", "use 'poly' or 'step'")
    steps = list(cfg.decay_steps)
    if cfg.schedule == "step" and (not all(0 < s < 1 for s in steps) or steps != sorted(steps)
                                   or not 0 < cfg.decay_factor <= 1):
        raise EdgeSegError(f"step schedule: decay steps {steps} and factor {cfg.decay_factor}",
                           "give increasing decay steps between 0 and 1 (fractions of the budget) and a factor in (0, 1]")
    return cfg


def _builder_args(model: str) -> set[str]:
    from edgeseg.models.registry import _BUILDERS

    return set(inspect.signature(_BUILDERS[model]).parameters) if model in _BUILDERS else set()


def make_optimizer(cfg: TrainConfig, params) -> tuple[torch.optim.Optimizer, float]:
    """The optimiser and its base learning rate: SGD (momentum 0.9) or AdamW, with ``cfg.weight_decay``;
    ``cfg.lr`` or 2e-3 for AdamW, 0.01 for SGD."""
    lr = cfg.lr or (2e-3 if cfg.optimizer == "adamw" else 0.01)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=cfg.weight_decay), lr
    return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay), lr


def learning_rate(cfg: TrainConfig, base: float, iteration: int, done: float) -> float:
    """The learning rate of step ``iteration`` when the fraction ``done`` of the budget is spent: ``base`` ×
    the linear warm-up (from 0.001×, over ``warmup_iters``) × poly or step decay."""
    warm = min(1.0, 0.001 + 0.999 * iteration / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
    done = min(done, 1.0)
    if cfg.schedule == "step":
        decay = cfg.decay_factor ** sum(done >= s for s in cfg.decay_steps)
    else:
        decay = (1 - done) ** cfg.poly_power
    return base * warm * decay


# Instance training folds the instance id into the mask (id·256 + class), so the semantic augmentation
# (flips, nearest-neighbour scaling, crops padded with IGNORE_INDEX = 255) moves both together.
_ID_STRIDE = 256


class _TrainView(Dataset):
    """Raw image (+ weight map as an extra channel, so augmentation moves it too) -> augmented,
    normalised image, mask, per-pixel weight. ``instances``: the mask carries instance ids too."""

    def __init__(self, ds: SegDataset, augment: TrainAugment, weights: list[np.ndarray] | None, instances: bool = False):
        self.ds, self.augment, self.weights, self.instances = ds, augment, weights, instances

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        image, mask = self.ds.raw(i)
        image = torch.from_numpy(np.ascontiguousarray(image, np.float32))
        mask = torch.from_numpy(np.ascontiguousarray(mask, np.int64))
        if self.instances:
            mask = torch.where(mask == IGNORE_INDEX, mask, mask + _ID_STRIDE * torch.from_numpy(
                np.ascontiguousarray(self.ds.instances[i], np.int64)))
        if self.weights is not None:
            image = torch.cat([image, torch.from_numpy(self.weights[i])[None]])
        image, mask = self.augment(image, mask)
        if self.weights is not None:
            image, weight = image[:-1], image[-1]
        else:
            weight = torch.ones(mask.shape)
        return normalize(image, self.ds.info.mean, self.ds.info.std), mask, weight


def instance_targets(masks: torch.Tensor) -> list[dict]:
    """Per image of a B×H×W batch of id·256 + class masks: torchvision's detection targets (``boxes``
    x1 y1 x2 y2 around each instance's pixels, ``labels`` its majority class, ``masks`` K×H×W uint8) and,
    for panoptic models' semantic branch, ``semantic``: the H×W class map (IGNORE_INDEX kept)."""
    targets = []
    for m in masks:
        ids, classes = m // _ID_STRIDE, m % _ID_STRIDE
        boxes, labels, binary = [], [], []
        for k in ids.unique().tolist():
            inside = (ids == k) & (classes != IGNORE_INDEX)
            if k == 0 or not inside.any():
                continue
            ys, xs = inside.nonzero(as_tuple=True)
            boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1])
            labels.append(int(classes[inside].mode().values))
            binary.append(inside.to(torch.uint8))
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                        "labels": torch.tensor(labels, dtype=torch.int64),
                        "masks": torch.stack(binary) if binary else torch.zeros(0, *m.shape, dtype=torch.uint8),
                        "semantic": classes})
    return targets


def weighted_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    pixel = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")
    valid = (target != IGNORE_INDEX).float()
    return (pixel * weight * valid).sum() / valid.sum().clamp(min=1)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean over foreground classes of 2|P∩G| / (|P| + |G|), with softmax probabilities as P."""
    prob = logits.softmax(1)
    valid = (target != IGNORE_INDEX).unsqueeze(1).float()
    onehot = F.one_hot(target.clamp(max=logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    inter = (prob * onehot * valid).sum(dims)
    denom = ((prob + onehot) * valid).sum(dims)
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return 1 - dice[1:].mean()


def train(cfg: TrainConfig, checkpoint: str | Path, resume: bool = False, progress: bool = True,
          log=print, prepare=None) -> tuple[torch.nn.Module, dict]:
    """``prepare``: called with the new model before the optimiser sees it, returns the model to train (QAT loads
    the source weights and inserts fake quantization there: ``train_qat``)."""
    cfg = apply_recipe(cfg)
    torch.manual_seed(cfg.seed)
    ds = get_dataset(cfg.dataset, "train", **cfg.dataset_args)
    info = ds.info
    task = model_task(cfg.model)
    model_args = dict(cfg.model_args)
    if task == "panoptic":  # which classes are things is the data set's to say
        if not info.thing_classes:
            raise EdgeSegError(f"data set '{cfg.dataset}' names no thing classes to train {cfg.model} on",
                               "use a data set with things and stuff: nuclei, lits, synthetic, coco-panoptic:...")
        model_args.setdefault("thing_classes", list(info.thing_classes))
    model = create(cfg.model, num_classes=info.num_classes, in_channels=info.in_channels, **model_args)
    if prepare is not None:
        model = prepare(model)
    instance = task in ("instance", "panoptic")  # both learn from per-instance targets
    if instance and getattr(ds, "instances", None) is None:
        raise EdgeSegError(f"data set '{cfg.dataset}' has no instance ids to train {cfg.model} on",
                           "use an instance data set: nuclei, lits, synthetic or coco:<images>,<json>")
    if instance and (cfg.weight_map or cfg.dice):
        raise EdgeSegError("--weight-map and the Dice loss are for semantic models", "drop them for an instance model")
    if cfg.weight_map and hasattr(model, "losses"):
        raise EdgeSegError(f"{cfg.model} trains on its paper's losses, which take no weight map", "drop --weight-map")
    opt, lr = make_optimizer(cfg, model.parameters())
    state = {"epoch": 0, "iteration": 0, "elapsed": 0.0, "losses": []}
    if resume and Path(checkpoint).is_file():
        payload = read_checkpoint(checkpoint)
        if payload["config"].get("name") != cfg.model:
            raise EdgeSegError(f"{checkpoint} holds a {payload['config'].get('name')}, not a {cfg.model}",
                               "resume with the same model, or write a new checkpoint")
        try:
            model.load_state_dict(payload["state_dict"])
            opt.load_state_dict(payload["optimizer"])
            state = dict(payload["train_state"])
            log(f"resumed from {checkpoint}: epoch {state['epoch']}, {state['elapsed'] / 60:.1f} min trained")
        except (RuntimeError, ValueError, KeyError, TypeError) as e:  # weights, optimiser or state of another shape
            raise EdgeSegError(f"{checkpoint} cannot be resumed ({type(e).__name__}: {str(e).splitlines()[0][:150]})",
                               "resume with the same model arguments, or write a new checkpoint") from None
    weights = None
    if cfg.weight_map:
        from edgeseg.data.weights import class_balance, unet_weight_map

        balance = class_balance(ds.masks, info.num_classes)
        instances = getattr(ds, "instances", None)
        weights = [unet_weight_map(m, balance, instances[i] if instances else None) for i, m in enumerate(ds.masks)]
    # Scale augmentation changes sizes, so batches need a fixed crop: by default the largest multiple of
    # the model's size divisor that fits the smallest training image.
    crop = cfg.crop or min(min(m.shape) for m in ds.masks) // model.size_divisor * model.size_divisor
    if crop < model.size_divisor:
        raise EdgeSegError(f"training images are smaller than {model.size_divisor} pixels", "use larger images or --crop")
    augment = TrainAugment(crop=crop, scale=cfg.scale, vflip=cfg.vflip, seed=cfg.seed + state["epoch"])
    loader = DataLoader(_TrainView(ds, augment, weights, instance), batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(cfg.seed + state["epoch"]))
    if len(loader) == 0:
        raise EdgeSegError(f"{len(ds)} training images is fewer than one batch of {cfg.batch_size}", "lower --batch-size")
    budget_s = cfg.minutes * 60 if cfg.minutes else None
    total_iters = min(cfg.epochs * len(loader), cfg.iterations or cfg.epochs * len(loader))
    meta = {"class_names": list(info.class_names), "in_channels": info.in_channels, "mean": list(info.mean),
            "std": list(info.std), "ignore_index": info.ignore_index, "size_divisor": model.size_divisor,
            "config": {"dataset": cfg.dataset, "dataset_args": _plain(cfg.dataset_args)}}
    if instance:
        meta.update(task=task, max_detections=model.max_detections)

    def fraction_done() -> float:
        by_iter = state["iteration"] / total_iters
        return max(by_iter, state["elapsed"] / budget_s) if budget_s else by_iter

    bar = tqdm(total=100, desc=f"train {cfg.model}", unit="%", disable=not progress,
               bar_format="{l_bar}{bar}| {n:.0f}/{total}% [{elapsed}<{remaining}] {postfix}")
    model.train()
    start = time.perf_counter() - state["elapsed"]
    while fraction_done() < 1.0:
        running = []
        for image, mask, weight in loader:
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, lr, state["iteration"], fraction_done())
            if instance:  # the model's own losses (Mask R-CNN: torchvision's RPN and RoI-head losses)
                loss = sum(model(image, instance_targets(mask)).values())
            else:
                outputs = model(image)
                logits = outputs["logits"]
                # A model naming its paper's loss terms (edgeseg.models.realtime: OHEM, auxiliary heads) is trained on them.
                paper_losses = getattr(model, "losses", None)
                loss = sum(paper_losses(outputs, mask).values()) if paper_losses else weighted_loss(logits, mask, weight)
                if cfg.dice:
                    loss = loss + soft_dice_loss(logits, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running.append(loss.item())
            state["iteration"] += 1
            state["elapsed"] = time.perf_counter() - start
            bar.n = min(100.0, 100 * fraction_done())
            bar.set_postfix_str(f"epoch {state['epoch'] + 1} loss {loss.item():.4f}")
            if fraction_done() >= 1.0:
                break
        state["epoch"] += 1
        state["losses"].append(float(np.mean(running)))
        save_checkpoint(checkpoint, model, meta, optimizer=opt.state_dict(), train_state=state,
                        train_config=_plain(asdict(cfg)))
    bar.close()
    model.eval()
    log(f"trained {cfg.model}: {state['epoch']} epochs, {state['iteration']} iterations, "
        f"{state['elapsed'] / 60:.1f} min, final loss {state['losses'][-1]:.4f}; checkpoint {checkpoint}")
    return model, state


def _plain(d: dict) -> dict:
    """Only types torch.load(weights_only=True) accepts."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def train_qat(source: str | Path, checkpoint: str | Path, *, iterations: int = 200, minutes: float | None = None,
              lr: float | None = None, batch_size: int | None = None, calib_images: int = 32, bits: int = 8,
              onnx_out: str | Path | None = None, progress: bool = True, log=print) -> tuple[torch.nn.Module, dict]:
    """Quantization-aware fine-tune of ``source`` (a checkpoint of 'edgeseg train'): fake INT8 quantization where
    TensorRT puts Q/DQ (``edgeseg.quant.qat``), input ranges calibrated by max on ``calib_images`` training images,
    then ``iterations`` steps (or ``minutes``) of the source's own recipe at ``lr`` (default: a tenth of its rate).
    Writes ``checkpoint`` (the fine-tuned float weights, ``train_config.qat`` true) and, with ``onnx_out``, the
    explicit-INT8 Q/DQ ONNX TensorRT builds from. Returns (the fine-tuned model, still fake-quantized; the state)."""
    from edgeseg.quant.qat import calibrate, export_qat, prepare_qat, strip_qat
    from edgeseg.runtime import meta_from_checkpoint_dict
    from edgeseg.runtime.prepost import model_input

    if iterations < 1 or calib_images < 1 or (minutes is not None and minutes <= 0):
        raise EdgeSegError(f"QAT budget: {iterations} iterations, {minutes} minutes, {calib_images} calibration images",
                           "give at least one iteration and one calibration image (and a positive --minutes)")
    payload = read_checkpoint(source)
    saved = payload.get("train_config")
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), str):
        raise EdgeSegError(f"{source} records no training configuration to fine-tune with",
                           "pass a checkpoint written by 'edgeseg train'")
    known = {f.name for f in fields(TrainConfig)}
    settings: dict[str, Any] = {k: tuple(v) if isinstance(v, list) and k in ("scale", "decay_steps") else v
                                for k, v in saved.items() if k in known}
    base = TrainConfig(**settings)
    base = apply_recipe(base)
    _, base_lr = make_optimizer(base, [torch.zeros(1, requires_grad=True)])
    cfg = replace(base, iterations=iterations, minutes=minutes, epochs=10**6, lr=lr or base_lr / 10, warmup_iters=0,
                  batch_size=batch_size or base.batch_size, recipe=None)
    meta = meta_from_checkpoint_dict(payload["config"], payload["meta"])
    # calibrated on the training set the fine-tune reads (its arguments too), spread over it
    ds = get_dataset(cfg.dataset, "train", **cfg.dataset_args)
    calibration = [model_input(ds.raw(i)[0], meta) for i in range(0, len(ds), max(1, len(ds) // calib_images))][:calib_images]

    def prepare(model: torch.nn.Module) -> torch.nn.Module:
        try:
            model.load_state_dict(payload["state_dict"])
        except RuntimeError as e:
            raise EdgeSegError(f"{source}: weights do not fit {cfg.model} ({str(e).splitlines()[0][:150]})",
                               "pass the checkpoint 'edgeseg train' wrote for this model") from None
        return calibrate(prepare_qat(model, bits), calibration)

    model, state = train(cfg, checkpoint, progress=progress, log=log, prepare=prepare)
    # the checkpoint holds the plain model's weights, so every verb reads it; the config says how it was tuned
    save_checkpoint(checkpoint, strip_qat(model), payload["meta"], train_state=state,
                    train_config=_plain({**asdict(cfg), "qat": True, "qat_bits": bits, "qat_source": str(source)}))
    if onnx_out is not None:
        export_qat(model, onnx_out, calibration, meta=meta, extra={"qat_iterations": state["iteration"]})
        log(f"wrote {onnx_out} (INT8 Q/DQ for TensorRT, QAT)")
    return model, state
