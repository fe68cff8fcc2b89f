import numpy as np
import pytest
import torch

from edgeseg.models.checkpoint import FORMAT, load_checkpoint
from edgeseg.runtime import open_session
from edgeseg.train import TrainConfig, train


def test_train_checkpoint_loads_weights_only_and_resumes(tmp_path):
    ckpt = tmp_path / "m.pt"
    cfg = TrainConfig(model="unet_padded", dataset="synthetic", model_args={"base_width": 4, "depth": 2},
                      dataset_args={"num_images": 8, "size": (64, 64)}, epochs=2, batch_size=4, crop=48,
                      weight_map=True)
    _, state = train(cfg, ckpt, progress=False, log=lambda *_: None)
    assert state["epoch"] == 2 and state["iteration"] == 4
    payload = torch.load(ckpt, weights_only=True)  # the whole checkpoint, no pickled objects
    assert payload["format"] == FORMAT and payload["meta"]["class_names"][0] == "stuff_0"
    model, _ = load_checkpoint(ckpt)
    s = open_session(ckpt, "torch")
    assert s.meta.num_classes == 4 and s.meta.size_divisor == 4
    assert s.run(torch.zeros(1, 3, 64, 64).numpy())["logits"].shape == (1, 4, 64, 64)
    cfg.epochs = 3
    _, state = train(cfg, ckpt, resume=True, progress=False, log=lambda *_: None)
    assert state["epoch"] == 3 and state["iteration"] == 6 and len(state["losses"]) == 3


def test_training_reduces_the_loss(tmp_path):
    cfg = TrainConfig(model="unet_padded", dataset="synthetic", model_args={"base_width": 8, "depth": 2},
                      dataset_args={"num_images": 16, "size": (64, 64)}, epochs=8, batch_size=4, crop=64,
                      optimizer="sgd", lr=0.05)
    _, state = train(cfg, tmp_path / "m.pt", progress=False, log=lambda *_: None)
    assert state["losses"][-1] < 0.8 * state["losses"][0]


def test_poly_and_step_schedules_and_warm_up():
    from edgeseg.train import learning_rate

    poly = TrainConfig(model="unet_padded")  # the default: poly, power 0.9, no warm-up
    assert [learning_rate(poly, 0.01, i, i / 100) for i in (0, 50, 100)] == pytest.approx([0.01, 0.01 * 0.5 ** 0.9, 0.0])
    step = TrainConfig(model="unet_padded", schedule="step", decay_steps=(0.5, 0.75), decay_factor=0.1)
    lrs = [learning_rate(step, 0.01, i, i / 100) for i in (0, 49, 50, 74, 75, 99, 100)]
    assert lrs == pytest.approx([0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4])
    # the default step points: 2/3 and 8/9 of the budget (here 90 iterations: 60 and 80)
    default = TrainConfig(model="unet_padded", schedule="step")
    assert [learning_rate(default, 0.01, i, i / 90) for i in (59, 60, 79, 80)] == pytest.approx([0.01, 1e-3, 1e-3, 1e-4])
    warm = TrainConfig(model="unet_padded", schedule="step", warmup_iters=10)
    assert [learning_rate(warm, 0.01, i, i / 100) for i in (0, 5, 10)] == pytest.approx(
        [0.01 * 0.001, 0.01 * (0.001 + 0.999 * 0.5), 0.01])


def test_lpsnet_recipe_and_optimizers():
    from edgeseg.errors import EdgeSegError
    from edgeseg.train import apply_recipe, make_optimizer

    params = [torch.nn.Parameter(torch.zeros(2))]
    cfg = apply_recipe(TrainConfig(model="lpsnet_resnet18", dataset="coco-panoptic:a,b,c", recipe="lpsnet"))
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.schedule, cfg.decay_factor) == ("sgd", 0.01, 1e-4, "step", 0.1)
    assert cfg.model_args == {"semantic_loss_weight": 0.7}  # the seed's COCO weight
    opt, lr = make_optimizer(cfg, params)
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD) and lr == 0.01
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.01, 0.9, 1e-4, False)
    # elsewhere the Cityscapes weight 1.0; what the caller set wins; a model without the argument gets none
    cfg = apply_recipe(TrainConfig(model="lpsnet_resnet18", dataset="nuclei", recipe="lpsnet", lr=0.02, batch_size=2))
    assert cfg.model_args == {"semantic_loss_weight": 1.0} and cfg.lr == 0.02 and cfg.schedule == "step"
    cfg = apply_recipe(TrainConfig(model="lpsnet_resnet18", dataset="coco-panoptic:a,b,c", recipe="lpsnet",
                                   model_args={"semantic_loss_weight": 0.5}, decay_factor=0.5))
    assert cfg.model_args == {"semantic_loss_weight": 0.5} and cfg.decay_factor == 0.5 and cfg.optimizer == "sgd"
    assert apply_recipe(TrainConfig(model="unet_padded", recipe="lpsnet")).model_args == {}
    # without a recipe nothing moves: AdamW at 2e-3, poly
    cfg = apply_recipe(TrainConfig(model="unet_padded"))
    opt, lr = make_optimizer(cfg, params)
    assert isinstance(opt, torch.optim.AdamW) and lr == 2e-3 and cfg.schedule == "poly"
    assert opt.param_groups[0]["weight_decay"] == 1e-4
    for bad in ({"recipe": "detectron"}, {"schedule": "cosine"}, {"schedule": "step", "decay_steps": (0.8, 0.5)},
                {"schedule": "step", "decay_steps": (1.5,)}, {"schedule": "step", "decay_factor": 0.0}):
        with pytest.raises(EdgeSegError):
            apply_recipe(TrainConfig(model="unet_padded", **bad))


def test_two_sgd_steps_with_the_lpsnet_recipe(tmp_path):
    from test_lpsnet import SMALL

    cfg = TrainConfig(model="lpsnet_resnet18", dataset="nuclei", recipe="lpsnet", iterations=2, batch_size=2, crop=64,
                      model_args=dict(SMALL), decay_steps=(0.5,))
    model, state = train(cfg, tmp_path / "m.pt", progress=False, log=lambda *_: None)
    assert state["iteration"] == 2 and all(np.isfinite(state["losses"]))
    assert model.semantic_loss_weight == 1.0  # nuclei is no COCO: the recipe's other weight
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    group = payload["optimizer"]["param_groups"][0]
    # the second step ran past the decay point at half the budget: 0.01 × 0.1
    assert group["lr"] == pytest.approx(1e-3) and group["momentum"] == 0.9 and group["weight_decay"] == 1e-4
    assert payload["optimizer"]["state"]  # momentum buffers: SGD took the steps
    saved = payload["train_config"]
    assert (saved["recipe"], saved["optimizer"], saved["schedule"]) == ("lpsnet", "sgd", "step")


def test_train_verb_options_and_the_recipe():
    """``edgeseg train``: the recipe fills what the command line leaves out; what it names wins, defaults too."""
    from edgeseg.cli import build_parser, train_config

    def cfg(*argv):
        return train_config(build_parser().parse_args(["train", "lpsnet_resnet18", "--data", "nuclei", *argv]))

    plain = cfg()
    assert (plain.optimizer, plain.schedule, plain.lr, plain.recipe) == ("adamw", "poly", None, None)
    seed = cfg("--recipe", "lpsnet")
    assert (seed.optimizer, seed.lr, seed.schedule, seed.decay_factor) == ("sgd", 0.01, "step", 0.1)
    assert seed.model_args["semantic_loss_weight"] == 1.0
    mine = cfg("--recipe", "lpsnet", "--optimizer", "adamw", "--lr", "0.002", "--decay-steps", "0.5")
    assert (mine.optimizer, mine.lr, mine.schedule, mine.decay_steps) == ("adamw", 0.002, "step", (0.5,))
