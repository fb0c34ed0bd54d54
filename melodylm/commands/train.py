"""``melodylm fit|validate|test``: Lightning's CLI over the model and data modules.

Presets live in ``configs/`` (``configs/quickstart.yaml``, ``configs/lm/``,
``configs/pianoroll/``, ``configs/seq2seq/``, ``configs/playlist/``); every
Trainer flag works as LightningCLI defines it (``--trainer.devices``,
``--trainer.num_nodes``, ``--trainer.strategy ddp``, ``--ckpt_path last``).
wandb runs offline unless ``WANDB_MODE`` says otherwise.
"""

from __future__ import annotations

import os
import sys

import lightning as L
from lightning.pytorch.cli import LightningCLI

SUBCOMMANDS = ("fit", "validate", "test")


class MelodyCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # The model's vocabulary is the data's tokenizer's: never configured twice.
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        # Every data module shards its own data by rank (HeldOutSplits): Lightning must not inject its
        # DistributedSampler, which cannot wrap the length-sorted and carried-state batch samplers and would
        # repeat held-out pieces to even the shards out.
        parser.set_defaults({"trainer.use_distributed_sampler": False})

    def before_instantiate_classes(self) -> None:
        # A preset's LearningRateMonitor needs a logger: with --trainer.logger false it goes, not the run.
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        if trainer.logger is False and trainer.callbacks:
            trainer.callbacks = [c for c in trainer.callbacks
                                 if not str(getattr(c, "class_path", "")).endswith("LearningRateMonitor")]


def cli(args: list[str], run: bool = True) -> MelodyCLI:
    """LightningCLI on ``args`` (a subcommand first when ``run``; without ``run``, only ``--config`` and overrides:
    the model, data module and trainer are built and returned, not fitted)."""
    os.environ.setdefault("WANDB_MODE", "offline")  # also when called without melodylm.cli.main
    kwargs = dict(subclass_mode_model=True, subclass_mode_data=True, save_config_kwargs={"overwrite": True},
                  parser_kwargs={"prog": "melodylm"})
    if run:
        # LightningCLI reads the command line itself; argv[0] stays the program that runs, which DDP's launcher
        # starts again for every other rank
        sys.argv = [sys.argv[0], *args]
        return MelodyCLI(L.LightningModule, L.LightningDataModule, **kwargs)
    # LightningCLI warns when it is given args while sys.argv holds a command line too (the bench's own flags)
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        return MelodyCLI(L.LightningModule, L.LightningDataModule, run=False, args=list(args), **kwargs)
    finally:
        sys.argv = argv
