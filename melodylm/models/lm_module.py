"""LightningModule around :class:`RecurrentLM`: loss, metrics, optimiser, checkpoint contents."""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric

from melodylm.errors import UserError
from melodylm.models.base import TrainingSteps, masked_nll
from melodylm.models.components.rnn_lm import RecurrentLM, map_state


class LanguageModelModule(TrainingSteps):
    """Next-token cross-entropy on a :class:`RecurrentLM`.

    Logs ``train/loss`` (nats per token), and for validation/test the exact
    token-weighted ``{stage}/nll_token`` (nats), ``{stage}/ppl`` and
    ``{stage}/bits_token``. Optimiser and schedule: :class:`TrainingSteps`.
    Gradient clipping is the Trainer's
    (``trainer.gradient_clip_val``, by norm).

    ``vocab_size`` is linked from the data module by the CLI. ``time_horizon``: anneal the learning
    rate by the clock too, within this share of the trainer's ``max_time`` (:class:`TrainingSteps`).
    ``bar_clock``: the :class:`RecurrentLM` bar clock (bars begun, capped at this many); its bar tokens come
    from the data module's tokenizer, and it needs ``data.carry_state`` (windows that start mid-piece from
    a blank state would restart the count).
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
        bar_clock: int = 0,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.05,
        time_horizon: float | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = RecurrentLM(vocab_size, embedding_dim, hidden_size, num_layers, cell, dropout, tie_weights,
                                 bar_clock)
        self.eval_nll = MeanMetric()
        self._carry = None  # the state the last carried training batch left (see model_step)

    def setup(self, stage: str) -> None:
        if not self.hparams.bar_clock:
            return
        data = self.trainer.datamodule
        if not getattr(data, "hparams", {}).get("carry_state"):
            raise UserError("model.init_args.bar_clock needs data.init_args.carry_state true")
        self.model.set_bar_tokens([i for t, i in data.tokenizer.vocab.items() if t.startswith("Bar_")])

    def model_step(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, int]:
        """Mean NLL (nats) over the non-padding targets of ``batch``, and their count.

        A batch ``(x, y, fresh)`` (from :class:`melodylm.data.windows.PieceStreams`) continues the previous
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
        return map_state(lambda s: s.to(keep.device) * keep, carry)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Also the state the last carried batch left (``carried_state``: ``h`` or ``(h, c)``, each
        ``(num_layers, batch, hidden_size)``), so a run resumed mid-epoch continues its rows from where they were."""
        super().on_save_checkpoint(checkpoint)
        if self._carry is not None:
            checkpoint["carried_state"] = self._carry

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self._carry = checkpoint.get("carried_state")
