"""Bring-your-own models through ``edgeseg bench`` on the CPU: a foreign ONNX (tests/test_byo.py's tiny sigmoid net,
legacy exporter, opset 12, BGR, with its sidecar) beside three zoo checkpoints, FP32 / FP16 / INT8, accuracy and latency
side by side on one binary data set.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/byo_bench.py [--minutes 1.5] [--repeats 20]

The data set: the nuclei crops (train and validation from disjoint columns) as a 3-channel folder of 0/255 masks, so
the foreign 3-channel model and the zoo models score the same images. Each model trains for ``--minutes`` at most
(random weights would make the accuracy column meaningless). Writes benchmarks/results/byo_cpu.{json,md,png} and
byo_cpu_examples.png.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch and onnxruntime start their thread pools

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from test_byo import BINARY_SIDECAR, Net, write_foreign  # noqa: E402  (the foreign model of the tests)

# model -> (model arguments, training overrides)
ZOO = {"unet_padded": ({"base_width": 16}, {}), "deeplabv3plus_mobilenetv3_os16": ({}, {"lr": 0.01, "dice": True}),
       "fcn8s_resnet18": ({}, {})}


def write_folder(root: Path) -> str:
    """nuclei -> folder:<root> with train/ and val/, RGB images and 0/255 masks."""
    from edgeseg.data import get_dataset

    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("background\nnucleus\n")
    for split in ("train", "val"):
        ds = get_dataset("nuclei", split)
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(len(ds)):
            image, mask = ds.raw(i)
            grey = (np.clip(image[0], 0, 1) * 255).round().astype(np.uint8)
            Image.fromarray(np.stack([grey] * 3, -1)).save(root / split / "images" / f"{i:03d}.png")
            Image.fromarray((mask > 0).astype(np.uint8) * 255).save(root / split / "masks" / f"{i:03d}.png")
    return f"folder:{root}"


def train_foreign(data: str, path: Path, minutes: float) -> None:
    """The foreign model trained as its owner might: BCE on the sidecar's preprocessing (BGR, (x - 0.5) / 0.5)."""
    from edgeseg.data import get_dataset

    ds = get_dataset(data, "train")
    xs = torch.from_numpy(np.stack([(ds.raw(i)[0][::-1] - 0.5) / 0.5 for i in range(len(ds))]).astype(np.float32))
    ys = torch.from_numpy(np.stack([ds.raw(i)[1] for i in range(len(ds))])[:, None].astype(np.float32))
    net = Net()
    opt = torch.optim.Adam(net.parameters(), 0.02)
    end = time.time() + 60 * minutes
    for step in range(400):
        loss = torch.nn.functional.binary_cross_entropy(net(xs), ys)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if time.time() > end:
            break
    write_foreign(path, net, {**BINARY_SIDECAR, "threshold": 0.5}, sample_hw=(128, 128))


def main() -> None:
    from edgeseg.cli import main as edgeseg
    from edgeseg.train import TrainConfig, train

    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=1.5, help="training time of each model, at most")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--work", default="runs/byo_bench")
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args()
    work = Path(a.work)
    data = write_folder(work / "nuclei_rgb")
    train_foreign(data, work / "foreign.onnx", a.minutes)
    checkpoints = []
    for name, (args, overrides) in ZOO.items():
        ckpt = work / f"{name}.pt"
        if not ckpt.exists():
            train(TrainConfig(model=name, dataset=data, model_args=args, crop=96, batch_size=4, iterations=2000,
                              minutes=a.minutes, **overrides), ckpt, progress=False, log=lambda *_: None)
        checkpoints.append(ckpt)
    code = edgeseg(["bench", str(work / "foreign.onnx"), *map(str, checkpoints), "--data", data, "--variants",
                      "torch:fp32,onnxruntime:fp32,onnxruntime:fp16,onnxruntime:int8,tensorrt:fp16", "--calib-images", "16",
                      "--repeats", str(a.repeats), "--warmup", "3", "--out", a.out, "--name", "byo_cpu"])
    if code == 0:
        md = Path(a.out) / "byo_cpu.md"
        md.write_text(md.read_text() + NOTE.format(minutes=a.minutes))
    sys.exit(code)


NOTE = """
Made by `benchmarks/byo_bench.py --minutes {minutes}`: the nuclei crops as a 3-channel folder (28 train, 7 validation
images, 128×128, disjoint columns). `foreign_binary` is tests/test_byo.py's tiny net (3×3 conv, tanh, 1×1 conv, sigmoid)
trained with BCE for at most {minutes} min, exported by the legacy exporter at opset 12 with a BGR sidecar (threshold 0.5): no
PyTorch model, so its reference is its own FP32 ONNX and its agreement is by thresholded foreground. The zoo models
are checkpoints trained for at most {minutes} min each (crop 96, batch 4); DeepLabV3+ MobileNetV3 has not converged in
that time (it barely finds foreground), which says nothing about its variants: they agree with PyTorch. Accuracy of
the foreign model is foreground IoU, of the others mIoU over background and nucleus. Examples: byo_cpu_examples.png.
"""


if __name__ == "__main__":
    main()
