"""LightningModule around :class:`Seq2Seq`: target NLL given the condition, metrics, optimiser, checkpoint."""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric

from melodylm.errors import UserError
from melodylm.models.base import TrainingSteps, masked_nll
from melodylm.models.components.seq2seq import Seq2Seq


class Seq2SeqModule(TrainingSteps):
    """Next-target-token cross-entropy of a :class:`Seq2Seq` given the condition.

    Logs ``train/loss`` and, on whole held-out pairs, the exact
    ``{stage}/nll_token`` (nats per target token, EOS included), ``{stage}/ppl``
    and ``{stage}/bits_token``: the numbers to set beside an unconditional LM
    trained on the same targets. Optimiser and schedule are the language
    model's (AdamW, warm-up, cosine). ``vocab_size`` is linked from the data
    module by the CLI. ``aligned`` feeds the decoder what the condition sounds at
    its current time (the data module's ``aligned: true`` serves it); ``aligned_memory`` also feeds it the
    encoder's state of the condition token sounding then.
    ``time_horizon`` anneals the learning rate by the clock (see :class:`TrainingSteps`).
    """

    checkpoint_kind = "seq2seq"

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 128,
        hidden_size: int = 256,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.1,
        aligned: bool = False,
        aligned_memory: bool = False,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.05,
        time_horizon: float | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if aligned_memory and not aligned:
            raise UserError("model.init_args.aligned_memory needs model.init_args.aligned: true")
        self.model = Seq2Seq(vocab_size, embedding_dim, hidden_size, num_layers, bidirectional, dropout, aligned,
                             aligned_memory)
        self.eval_nll = MeanMetric()

    def model_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Mean NLL (nats) over the non-padding target tokens of ``batch``, and their count."""
        if self.model.aligned != ("features" in batch):
            raise UserError("model.init_args.aligned and data.init_args.aligned must agree (both true or both false)")
        logits = self.model(batch["source"], batch["source_mask"], batch["inputs"], batch.get("features"),
                            batch.get("now"))
        return masked_nll(logits, batch["targets"])
