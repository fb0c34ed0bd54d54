"""What every melodylm LightningModule shares: the masked cross-entropy and the training loop around it."""

from __future__ import annotations

import math
import time

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Timer

from melodylm.checkpoint import block, check_tokenizer_matches
from melodylm.data.windows import IGNORE
from melodylm.errors import UserError


def masked_nll(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy (nats) of ``logits (..., classes)`` over the ``targets`` that are not ``IGNORE``, and
    their count: the ``model_step`` result of every module."""
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE)
    return loss, int((targets != IGNORE).sum())


class TrainingSteps(L.LightningModule):
    """What every melodylm LightningModule shares: the train/validation/test loop around ``model_step``,
    AdamW with linear warm-up and cosine decay to ``min_lr_ratio * lr`` (hyperparameters ``lr``,
    ``weight_decay``, ``warmup_steps``, ``min_lr_ratio``), and the data module lookup.

    A subclass defines ``self.model``, ``self.eval_nll`` (a ``MeanMetric``), ``model_step(batch) ->
    (loss, count)`` and ``checkpoint_kind``; ``_eval_epoch_end(stage)`` logs the token NLL unless
    overridden. With a hyperparameter ``time_horizon`` (a share of
    the trainer's ``max_time``, e.g. 0.95; the piano-roll presets set it), the cosine's progress is the
    larger of the steps done and the time used, so a run cut by its time cap still anneals fully.
    """

    def training_step(self, batch, batch_idx):
        loss, count = self.model_step(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=count)
        return loss

    def _eval_step(self, batch) -> None:
        loss, count = self.model_step(batch)
        self.eval_nll.update(loss, weight=count)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_test_epoch_end(self):
        self._eval_epoch_end("test")

    def _eval_epoch_end(self, stage: str) -> None:
        """The token-weighted ``{stage}/nll_token`` (nats), ``{stage}/ppl`` and ``{stage}/bits_token``."""
        nll = self.eval_nll.compute()
        self.eval_nll.reset()
        self.log_dict({
            f"{stage}/nll_token": nll,
            f"{stage}/ppl": torch.exp(nll),
            f"{stage}/bits_token": nll / math.log(2),
        }, prog_bar=True)

    def configure_optimizers(self):
        decay = [p for n, p in self.model.named_parameters() if p.dim() > 1 and "embedding" not in n]
        no_decay = [p for n, p in self.model.named_parameters() if not (p.dim() > 1 and "embedding" not in n)]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr,
        )
        estimated = float(self.trainer.estimated_stepping_batches)
        warmup, floor = self.hparams.warmup_steps, self.hparams.min_lr_ratio
        horizon = self.schedule_seconds()
        if not math.isfinite(estimated) and not horizon:
            raise UserError("an endless run (max_epochs -1, no max_steps) needs trainer.max_time and "
                            "model.init_args.time_horizon to anneal the learning rate by the clock")
        total = max(int(estimated), 1) if math.isfinite(estimated) else None
        start = time.monotonic()

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total - warmup, 1) if total else 0.0
            if horizon:
                progress = max(progress, (time.monotonic() - start) / horizon)
            progress = min(progress, 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def schedule_seconds(self) -> float | None:
        """The wall-clock horizon of the learning-rate schedule: ``time_horizon`` x the time left under the
        trainer's ``max_time`` (None without either: the schedule follows the steps alone)."""
        share = self.hparams.get("time_horizon")
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        remaining = timer.time_remaining() if timer is not None else None
        return share * remaining if share and remaining else None

    def _datamodule(self):
        trainer = self._trainer
        return getattr(trainer, "datamodule", None) if trainer is not None else None

    # --- self-describing checkpoints (melodylm.checkpoint) ---------------------------------------------

    checkpoint_kind: str  # each subclass's kind in melodylm.checkpoint.KINDS: which object load() returns

    def checkpoint_fields(self) -> dict:
        """What the checkpoint holds beside the weights and the model config; by default the data module's
        tokenizer (its JSON and fingerprint) and prepare settings, so one file is enough to sample and score."""
        dm = self._datamodule()
        return {"tokenizer": dm.tokenizer_json, "tokenizer_fingerprint": dm.tokenizer_fingerprint,
                "prepare": dm.prepare_settings}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["melodylm"] = block(self.checkpoint_kind, self.model.config, **self.checkpoint_fields())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        dm = self._datamodule()
        fingerprint = getattr(dm, "tokenizer_fingerprint", None)
        if fingerprint is not None:  # resuming or testing on data tokenized otherwise is refused
            check_tokenizer_matches(checkpoint, fingerprint, str(getattr(dm, "root", "the data")))
