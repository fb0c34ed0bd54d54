"""LightningModule around :class:`PlaylistNet`: softmax over the catalog per step, metrics, checkpoint."""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric

from melodylm.models.base import TrainingSteps, masked_nll
from melodylm.models.components.playlist import PlaylistNet, repeat_mask


class PlaylistModule(TrainingSteps):
    """Next-track cross-entropy (nats per track) over the whole catalog, tracks already played masked out.

    The network is built in :meth:`setup` once the data module's catalog (and
    song embeddings, if any) is known; ``vocab_size`` (title characters) is
    linked from the data module by the CLI. Logs ``train/loss`` and
    ``{val,test}/nll_track``. Optimiser and schedule are the language model's.
    """

    checkpoint_kind = "playlist"

    def __init__(self, vocab_size: int, embedding_dim: int = 32, hidden_size: int = 128, dim: int = 64,
                 dropout: float = 0.1, lr: float = 3e-3, weight_decay: float = 0.01, warmup_steps: int = 20,
                 min_lr_ratio: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.model: PlaylistNet | None = None
        self.catalog_json: list[dict] | None = None
        self.eval_nll = MeanMetric()

    def setup(self, stage: str) -> None:
        if self.model is not None:
            return
        dm = self.trainer.datamodule
        feature_dim = 0 if dm.features is None else int(dm.features.shape[1])
        hp = self.hparams
        self.model = PlaylistNet(hp.vocab_size, len(dm.catalog), feature_dim, hp.embedding_dim, hp.hidden_size,
                                 hp.dim, hp.dropout)
        if feature_dim:
            self.model.features.copy_(dm.features)
        self.catalog_json = dm.catalog.to_json()

    def model_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Mean NLL (nats) per target track of ``batch``, and the number of tracks."""
        logits = self.model(batch["titles"], batch["lengths"], batch["previous"])
        logits = logits.masked_fill(repeat_mask(batch["previous"], logits.shape[-1]), float("-inf"))
        return masked_nll(logits, batch["targets"])

    def _eval_epoch_end(self, stage: str) -> None:
        self.log(f"{stage}/nll_track", self.eval_nll.compute(), prog_bar=True)
        self.eval_nll.reset()

    def checkpoint_fields(self) -> dict:
        return {"catalog": self.catalog_json,
                "data": {k: v for k, v in self.trainer.datamodule.hparams.items()} if self._trainer else {}}
