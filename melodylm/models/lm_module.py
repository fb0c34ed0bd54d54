"""LightningModule around :class:`RecurrentLM`: loss, metrics, optimiser, checkpoint contents."""

from __future__ import annotations

import math
import time

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from melodylm.batches import IGNORE
from melodylm.checkpoint import FORMAT_VERSION, check_tokenizer_matches
from melodylm.models.components.rnn_lm import RecurrentLM, map_state


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
    (loss, count)`` and ``_eval_epoch_end(stage)``. When ``schedule_seconds`` is set (the piano-roll
    bench sets it from ``--max-minutes``), the cosine's progress is the larger of the steps done and
    the time used, so a run cut by a time cap still anneals.
    """

    schedule_seconds: float | None = None  # a wall-clock horizon for the learning-rate schedule (None: steps only)

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

    def configure_optimizers(self):
        decay = [p for n, p in self.model.named_parameters() if p.dim() > 1 and "embedding" not in n]
        no_decay = [p for n, p in self.model.named_parameters() if not (p.dim() > 1 and "embedding" not in n)]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr,
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup, floor = self.hparams.warmup_steps, self.hparams.min_lr_ratio
        horizon = self.schedule_seconds
        start = time.monotonic()

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total - warmup, 1)
            if horizon:
                progress = max(progress, (time.monotonic() - start) / horizon)
            progress = min(progress, 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _datamodule(self):
        trainer = self._trainer
        return getattr(trainer, "datamodule", None) if trainer is not None else None


class LanguageModelModule(TrainingSteps):
    """Next-token cross-entropy on a :class:`RecurrentLM`.

    Logs ``train/loss`` (nats per token), and for validation/test the exact
    token-weighted ``{stage}/nll_token`` (nats), ``{stage}/ppl`` and
    ``{stage}/bits_token``. Optimiser and schedule: :class:`TrainingSteps`.
    Gradient clipping is the Trainer's
    (``trainer.gradient_clip_val``, by norm).

    ``vocab_size`` is linked from the data module by the CLI.
    """

    checkpoint_kind = "language_model"  # the checkpoint's ``melodylm.kind``: which loader reads it

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 256,
        hidden_size: int = 512,
        num_layers: int = 2,
        cell: str = "lstm",
        dropout: float = 0.2,
        tie_weights: bool = False,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.05,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = RecurrentLM(vocab_size, embedding_dim, hidden_size, num_layers, cell, dropout, tie_weights)
        self.eval_nll = MeanMetric()
        self._carry = None  # the state the last carried training batch left (see model_step)

    def model_step(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, int]:
        """Mean NLL (nats) over the non-padding targets of ``batch``, and their count.

        A batch ``(x, y, fresh)`` (from :class:`melodylm.batches.PieceStreams`) continues the previous
        batch: each row starts from the state the previous batch left in that row (detached, so
        gradients stop at the window boundary), or from zero where ``fresh`` says a new piece starts.
        """
        x, y, *fresh = batch
        state = self._carried_state(fresh[0]) if fresh else None
        logits, state = self.model(x, state)
        if fresh:
            self._carry = map_state(torch.Tensor.detach, state)
        return masked_nll(logits, y)

    def _carried_state(self, fresh: torch.Tensor):
        carry = self._carry
        if carry is None or fresh.all():
            return None
        keep = (~fresh).to(self.model.head.weight.dtype)[None, :, None]  # (layers, batch, hidden) broadcast
        return map_state(lambda s: s * keep, carry)

    def _eval_epoch_end(self, stage: str) -> None:
        nll = self.eval_nll.compute()
        self.eval_nll.reset()
        self.log_dict({
            f"{stage}/nll_token": nll,
            f"{stage}/ppl": torch.exp(nll),
            f"{stage}/bits_token": nll / math.log(2),
        }, prog_bar=True)

    # --- self-describing checkpoints -------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        dm = self._datamodule()
        checkpoint["melodylm"] = {
            "format": FORMAT_VERSION,
            "kind": self.checkpoint_kind,
            "model": dict(self.model.config),
            "tokenizer": dm.tokenizer_json,
            "tokenizer_fingerprint": dm.tokenizer_fingerprint,
            "prepare": dm.prepare_settings,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        dm = self._datamodule()
        if dm is not None:
            check_tokenizer_matches(checkpoint, dm.tokenizer_fingerprint, str(dm.root))
