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
