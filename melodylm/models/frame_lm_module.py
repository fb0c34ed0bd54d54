"""LightningModule for the piano-roll benchmark: the language model, with the NLL per frame as its metric."""

from __future__ import annotations

import logging

import torch
from torchmetrics import SumMetric

from melodylm.data import pianoroll as PR
from melodylm.models.lm_module import LanguageModelModule

log = logging.getLogger("melodylm")


class FrameLanguageModel(LanguageModelModule):
    """The language model on piano-roll frame tokens, also logging ``{stage}/nll_frame``: the summed token NLL
    over the frames (each frame ends with one of the data's encoding's ``frame_ends``).

    Its data module is :class:`~melodylm.data.datamodules.RollDataModule`; the arguments are
    :class:`~melodylm.models.lm_module.LanguageModelModule`'s.
    """

    checkpoint_kind = "pianoroll_language_model"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("frame_ends", torch.tensor([PR.FRAME]), persistent=False)
        self.eval_sum, self.eval_frames = SumMetric(), SumMetric()

    def setup(self, stage: str) -> None:
        dm = self._datamodule()
        if dm is not None:  # the tokens that close a frame are the data's encoding's
            self.frame_ends = torch.tensor(dm.encoding.frame_ends, device=self.frame_ends.device)

    def _eval_step(self, batch) -> None:
        loss, count = self.model_step(batch)
        self.eval_nll.update(loss, weight=count)
        self.eval_sum.update(loss * count)
        self.eval_frames.update(torch.isin(batch[1], self.frame_ends).sum())

    def _eval_epoch_end(self, stage: str) -> None:
        nll_frame = self.eval_sum.compute() / self.eval_frames.compute()
        self.log(f"{stage}/nll_frame", nll_frame, prog_bar=True)
        if stage == "val" and not self.trainer.sanity_checking:  # a line per epoch, readable in a log file too
            log.info("epoch %d: validation %.3f nats/frame", self.current_epoch, float(nll_frame))
        self.eval_sum.reset()
        self.eval_frames.reset()
        super()._eval_epoch_end(stage)
