"""Lightning callbacks: listen to the model while it trains.

:class:`SampleDashboard` samples a few pieces after validation and logs them to
wandb (piano rolls, audio, MIDI artifact, a table of music metrics), so a run's
page shows how the music changes epoch by epoch, next to ``val/nll_token``.
:class:`StepCheckpoint` writes ``last.ckpt`` every N steps, so a killed run
resumes from at most N steps back.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from symusic import Score

from melodylm.api.lm import MusicLM
from melodylm.audio import render_wav, synthesizer
from melodylm.decoding import processors as P
from melodylm.decoding.core import Sample
from melodylm.evaluation.music import piece_metrics
from melodylm.render import pianoroll_png, write_midi

log = logging.getLogger(__name__)


class StepCheckpoint(ModelCheckpoint):
    """``last.ckpt`` in ``dirpath`` every ``every_n_train_steps`` training steps, so a run killed at any point
    resumes (``--ckpt_path last``) from at most that many steps back, mid-epoch (the loader's position, the
    carried state and the random state are in the checkpoint).

    With ``save_top_k`` 0 (the default) it keeps no other file (``-1``: also every ``filename`` checkpoint).
    Unlike Lightning's ``ModelCheckpoint`` it does not write ``last.ckpt`` once more when training ends: the
    presets' best-checkpoint callback, which shares ``last.ckpt`` with it (both with
    ``enable_version_counter: false``), writes it after every validation.
    """

    def __init__(self, dirpath: str | None = None, every_n_train_steps: int = 200, save_top_k: int = 0,
                 filename: str | None = None, auto_insert_metric_name: bool = True):
        super().__init__(dirpath=dirpath, filename=filename, every_n_train_steps=every_n_train_steps,
                         save_top_k=save_top_k, save_last=True, enable_version_counter=False,
                         auto_insert_metric_name=auto_insert_metric_name)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass


class SampleDashboard(L.Callback):
    """After validation (every ``every_n_epochs`` epochs), sample and log the music to wandb.

    Runs on global rank 0 during ``fit``, after every validation of a chosen
    epoch except the sanity check. It samples ``num_samples`` pieces in one
    batch from the module's ``.model`` with the data module's tokenizer (the
    same decoding as ``melodylm sample``; the same ``seed`` every time, so
    epochs compare like with like), writes MIDI, piano-roll PNG, JSON and, if
    ``audio``, WAV files to ``<log dir>/samples/epoch-NN/`` (``epoch-NN-stepSSSSSS``
    for a validation inside an epoch), and logs to the run of the trainer's
    :class:`~lightning.pytorch.loggers.WandbLogger`:

    - ``samples/pianoroll``: one image per piece;
    - ``samples/audio/sample-NN``: the recording of each piece (see :mod:`melodylm.audio`);
    - ``samples/metrics``: a table, one row per piece: tokens, log-probability
      (nats), whether it ended with EOS, length (seconds) and the music metrics
      of :func:`melodylm.evaluation.music.piece_metrics`;
    - ``samples/<column>``: the mean of every numeric column of that table over
      the pieces (``samples/ended_with_eos`` is the share that ended), charted
      against ``trainer/global_step``;
    - an artifact ``samples-<run id>`` of type ``samples`` holding the MIDI
      files, one version per logging, aliased ``epoch-NN``.

    Without a WandbLogger, or with wandb disabled (``WANDB_MODE=disabled``), it
    does nothing but say so once. A failure while sampling or logging is
    logged as a warning and never stops training.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_samples: int = 4,
        max_tokens: int = 512,
        temperature: float = 1.0,
        top_p: float = 0.95,
        min_notes: int = 16,
        seed: int = 0,
        audio: bool = True,
    ):
        if every_n_epochs < 1 or num_samples < 1 or max_tokens < 1:
            raise ValueError("every_n_epochs, num_samples and max_tokens must be >= 1, got "
                             f"{every_n_epochs}, {num_samples}, {max_tokens}")
        P.Temperature(temperature)  # refuse bad settings now, not after an epoch of training
        P.TopP(top_p)
        self.every_n_epochs = every_n_epochs
        self.audio = audio
        self.settings = dict(num=num_samples, max_tokens=max_tokens, temperature=temperature,
                             top_p=top_p, min_notes=min_notes, seed=seed)
        self._told_inactive = False

    # --- when ------------------------------------------------------------------

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        logger, run = self._wandb_run(trainer, pl_module)
        if run is None:
            return
        root = Path(logger.save_dir or trainer.default_root_dir).resolve()  # trainer.log_dir, without its broadcast
        epoch, step = trainer.current_epoch, trainer.global_step
        at_epoch_end = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        out = root / "samples" / (f"epoch-{epoch:02d}" if at_epoch_end else f"epoch-{epoch:02d}-step{step:06d}")
        try:
            self.log_samples(run, pl_module.model, trainer.datamodule, out, epoch, step)
        except Exception:  # the dashboard is a side channel: never lose a training run to it
            log.warning("sample dashboard failed at epoch %d step %d; training continues", epoch, step,
                        exc_info=True)

    def _wandb_run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[WandbLogger | None, object]:
        """The WandbLogger and its wandb run to log to; the run is None when inactive (said once)."""
        logger = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        reason = None
        if logger is None:
            reason = "the trainer has no WandbLogger"
        elif not all(hasattr(obj, attr) for obj, attr in ((pl_module, "model"), (trainer.datamodule, "tokenizer"))):
            reason = "it needs a module with .model and a data module with .tokenizer"
        run = logger.experiment if reason is None else None
        if run is not None and getattr(run, "disabled", False):
            reason = "wandb is disabled (WANDB_MODE=disabled)"
        if reason is None:
            return logger, run
        if not self._told_inactive:
            log.info("SampleDashboard is inactive: %s", reason)
            self._told_inactive = True
        return logger, None

    # --- what ------------------------------------------------------------------

    def sample(self, model: torch.nn.Module, datamodule) -> list[tuple[Sample, Score]]:
        """``num_samples`` pieces and their scores; ``model`` is left in the train/eval mode it was in.

        The model is sampled where it is, on its own device (no copy).
        """
        was_training = model.training
        try:
            with torch.inference_mode():
                lm = MusicLM(model, datamodule.tokenizer, getattr(datamodule, "prepare_settings", None))
                return [(s, lm.to_score(s.ids)) for s in lm.sample(**self.settings)]
        finally:
            model.train(was_training)

    def write(self, pieces: list[tuple[Sample, Score]], out: Path) -> list[dict]:
        """MIDI, piano-roll PNG (and WAV) per piece in ``out``, plus ``samples.json``; returns one row per piece.

        A row holds the piece's name (``sample-NN``, the stem of its files), the
        sampling facts (tokens, log-probability in nats, ended with EOS, length
        in seconds) and its scalar music metrics.
        """
        rows = []
        for i, (s, score) in enumerate(pieces):
            stem = out / f"sample-{i:02d}"
            write_midi(score, stem.with_suffix(".mid"))
            title = f"{out.name}/{stem.name}  seed={self.settings['seed']}"
            pianoroll_png(score, stem.with_suffix(".png"), title=title)
            if self.audio:
                render_wav(score, stem.with_suffix(".wav"))
            rows.append({
                "sample": stem.name, "tokens": len(s.ids), "logprob": s.logprob, "ended_with_eos": s.ended,
                "seconds": float(score.to("second").end()), **_scalars(_measure(score, stem.name)),
            })
        (out / "samples.json").write_text(json.dumps({"settings": self.settings, "samples": rows}, indent=1))
        return rows

    def log_samples(self, run, model: torch.nn.Module, datamodule, out: Path, epoch: int, step: int) -> Path:
        """Sample into ``out`` and log everything to the wandb ``run``; returns ``out``."""
        import wandb

        start = time.perf_counter()
        rows = self.write(self.sample(model, datamodule), out)
        columns = list(dict.fromkeys(k for r in rows for k in r))
        media = {
            "samples/pianoroll": [wandb.Image(str(out / f"{r['sample']}.png"), caption=r["sample"]) for r in rows],
            "samples/metrics": wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows]),
            "trainer/global_step": step,
        }
        if self.audio:  # one key per piece: wandb logs a *list* of Audio only with the soundfile package
            media.update({f"samples/audio/{r['sample']}": wandb.Audio(str(out / f"{r['sample']}.wav"),
                                                                     caption=r["sample"]) for r in rows})
        for c in columns:
            values = [float(r[c]) for r in rows if isinstance(r.get(c), (int, float))]
            if values:
                media[f"samples/{c}"] = sum(values) / len(values)
        run.log(media)

        artifact = wandb.Artifact(f"samples-{run.id}", type="samples", metadata={
            "epoch": epoch, "global_step": step, "settings": self.settings,
            "synthesizer": synthesizer() if self.audio else None,
        })
        for r in rows:  # "immutable": the files stay where they are (no copy in ~/.local/share/wandb until sync)
            artifact.add_file(str(out / f"{r['sample']}.mid"), policy="immutable")
        run.log_artifact(artifact, aliases=[f"epoch-{epoch:02d}"])
        log.info("sample dashboard: %d pieces at epoch %d step %d in %.1f s -> %s",
                 len(rows), epoch, step, time.perf_counter() - start, out)
        return out


def _measure(score: Score, name: str) -> dict:
    try:
        return piece_metrics(score)
    except Exception:  # one odd piece costs its own metrics, not the dashboard
        log.warning("music metrics failed on %s; logging its note count only", name, exc_info=True)
        return {"note_count": float(score.note_num())}


def _scalars(metrics: dict) -> dict[str, float | bool | None]:
    """The scalar entries of a metrics dict (lists such as histograms are left out); inf and NaN become None."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool):
            out[k] = v
        elif isinstance(v, (int, float)):
            out[k] = float(v) if math.isfinite(v) else None
    return out
