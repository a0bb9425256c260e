"""Training a found cell from scratch, and evaluating the trained network.

- `config`: TrainConfig, the presets, make_config.
- `recipe`: DARTS' final-training recipe piece by piece (precision, loss, schedules, optimiser, the network).
- `data`: the loaders of a run.
- `epoch`: one training epoch.
- `evaluation`: test accuracy, and a trained network rebuilt from its checkpoint.
- `run`: a training run in its run folder (resumable through rarts.runs).

    cfg = make_config("quick", {"epochs": 2}, {"genotype": "DARTS_V2"})
    result = train(cfg, "runs/train-darts-v2")          # resume=True continues a killed run
"""

from rarts.runs.checkpoint import CHECKPOINT_NAME
from rarts.train.config import TrainConfig, make_config, preset_for
from rarts.train.data import Data, make_data
from rarts.train.epoch import train_one_epoch
from rarts.train.evaluation import evaluate, evaluate_checkpoint, load_checkpoint, model_from_checkpoint
from rarts.train.recipe import (
    autocast,
    drop_path_at,
    lr_factor,
    make_criterion,
    make_model,
    make_optimizer,
    make_scheduler,
    network_kind,
    precision_name,
    resolve_channels_last,
    resolve_precision,
    training_loss,
)
from rarts.train.run import train

__all__ = [
    "CHECKPOINT_NAME",
    "Data",
    "TrainConfig",
    "autocast",
    "drop_path_at",
    "evaluate",
    "evaluate_checkpoint",
    "load_checkpoint",
    "lr_factor",
    "make_config",
    "make_criterion",
    "make_data",
    "make_model",
    "make_optimizer",
    "make_scheduler",
    "model_from_checkpoint",
    "network_kind",
    "precision_name",
    "preset_for",
    "resolve_channels_last",
    "resolve_precision",
    "train",
    "train_one_epoch",
    "training_loss",
]
