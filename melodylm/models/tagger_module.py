"""LightningModule around :class:`BeatTagger`: one chord label per beat of a melody (the aligned baseline)."""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric

from melodylm.data.beats import NUM_FEATURES
from melodylm.data.chords import LABELS
from melodylm.data.windows import IGNORE
from melodylm.models.base import TrainingSteps, masked_nll
from melodylm.models.components.seq2seq import BeatTagger


class TaggerModule(TrainingSteps):
    """Cross-entropy of the chord label per beat; logs ``{stage}/accuracy`` (share of beats right) and
    ``{stage}/nll_beat`` (nats). ``vocab_size`` is the number of chord labels, linked from the data module.
    ``time_horizon``: anneal the learning rate by the clock too (:class:`~melodylm.models.base.TrainingSteps`)."""

    checkpoint_kind = "chord_tagger"

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.2,
        lr: float = 3e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 50,
        min_lr_ratio: float = 0.05,
        time_horizon: float | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = BeatTagger(vocab_size, NUM_FEATURES, hidden_size, num_layers, dropout)
        self.eval_nll, self.eval_acc = MeanMetric(), MeanMetric()

    def model_step(self, batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        logits = self.model(batch["features"], batch["lengths"])
        y = batch["labels"]
        loss, count = masked_nll(logits, y)
        real = y != IGNORE
        return loss, (logits.argmax(-1)[real] == y[real]).float().mean(), count

    def training_step(self, batch, batch_idx):
        loss, acc, count = self.model_step(batch)
        self.log_dict({"train/loss": loss, "train/accuracy": acc}, prog_bar=True, batch_size=count)
        return loss

    def _eval_step(self, batch) -> None:
        loss, acc, count = self.model_step(batch)
        self.eval_nll.update(loss, weight=count)
        self.eval_acc.update(acc, weight=count)

    def _eval_epoch_end(self, stage: str) -> None:
        self.log_dict({f"{stage}/nll_beat": self.eval_nll.compute(), f"{stage}/accuracy": self.eval_acc.compute()},
                      prog_bar=True)
        self.eval_nll.reset()
        self.eval_acc.reset()

    def checkpoint_fields(self) -> dict:
        dm = self._datamodule()
        return {"labels": list(LABELS), "prepare": {"pairs": dict(vars(dm.settings))} if dm is not None else {}}
