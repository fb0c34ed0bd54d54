"""``melodylm fit|validate|test``: Lightning's CLI over the model and data modules.

Presets live in ``configs/*.yaml``; every Trainer flag works as LightningCLI
defines it (``--trainer.devices``, ``--trainer.num_nodes``,
``--trainer.strategy ddp``, ``--ckpt_path last``). wandb runs offline unless
``WANDB_MODE`` says otherwise.
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


def run(args: list[str]) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")  # also when called without melodylm.cli.main
    sys.argv = ["melodylm", *args]  # LightningCLI reads the command line itself
    MelodyCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "melodylm"},
    )
