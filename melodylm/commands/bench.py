"""``melodylm bench pianoroll|melody|transcription``: the benchmarks, in the literature's units.

``pianoroll`` trains a LightningCLI preset (``configs/pianoroll/*.yaml``) on a
Boulanger-Lewandowski ``.mat`` file and reports nats per frame;
``melody`` scores a prepared split with a language model beside n-gram
baselines; ``transcription`` renders Nottingham tunes and measures the melody
transcription prior, or with ``--polyphonic`` renders a ``.mat`` file's pieces
on a piano and measures the piano-roll LM prior (both need ``make
transcribe-extra audio``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
import yaml

from melodylm.checkpoint import load
from melodylm.commands.args import existing_input, output_folder
from melodylm.errors import UserError
from melodylm.evaluation import bench_melody, bench_pianoroll, bench_polyphonic, bench_transcription, melody_folds

log = logging.getLogger("melodylm")


def add_arguments(b: argparse.ArgumentParser) -> None:
    bsub = b.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    r = bsub.add_parser("pianoroll", help="train and test on a piano-roll .mat file: test NLL in nats per frame",
                        description="Boulanger-Lewandowski piano-roll benchmark (JSB Chorales, Nottingham, MuseData, "
                        "Piano-midi.de, or any .mat with traindata/validdata/testdata of frames x 88 binary rolls). "
                        "Trains the preset (a LightningCLI config, the one `melodylm fit --config` takes) with "
                        "every piece checked to convert to tokens and MIDI losslessly, keeps the epoch with the "
                        "best validation NLL per frame, scores validation and test pieces whole, and writes "
                        "OUT/results.json, OUT/checkpoints/ and OUT/samples/ (MIDI + PNG).",
                        epilog="example: melodylm bench pianoroll --data ../shared/data/pianoroll/JSB_Chorales.mat "
                        "--config configs/pianoroll/jsb.yaml --out runs/pianoroll-jsb")
    r.add_argument("--data", required=True, type=Path, help="the .mat file")
    r.add_argument("--out", required=True, type=Path, help="output folder")
    r.add_argument("--config", required=True, type=Path, help="the preset, e.g. configs/pianoroll/jsb.yaml")
    r.add_argument("--max-minutes", type=float, default=60.0,
                   help="cap on wall-clock training time (default 60); a preset with model.time_horizon anneals "
                   "the learning rate within that share of it")
    r.add_argument("--epochs", type=int, default=None, help="override the preset's epoch count")
    r.add_argument("--max-pieces", type=int, default=None, help="use only the first N pieces of each split (quick checks)")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")

    m = bsub.add_parser("melody", help="NLL per note and bits per pitch of a trained LM, next to n-gram baselines",
                        description=bench_melody.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="example: melodylm bench melody --ckpt checkpoints/nottingham-melody "
                        "--data datasets/prepared/nottingham-melody-t5 --out runs/melody-nottingham.json")
    bench_melody.add_arguments(m)

    t = bsub.add_parser("transcription", help="melody (or --polyphonic: piano-roll) transcription with an LM prior "
                        "on rendered audio",
                        description=bench_transcription.__doc__ + "\nWith --polyphonic:\n\n" + bench_polyphonic.__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="examples: melodylm bench transcription --ckpt checkpoints/nottingham-melody\n"
                        "  melodylm bench transcription --polyphonic --ckpt checkpoints/pianoroll-jsb "
                        "--data ../shared/data/pianoroll/JSB_Chorales.mat --out runs/transcription-jsb")
    bench_transcription.add_arguments(t)
    bench_polyphonic.add_arguments(t)


def main(args) -> int:
    if args.bench == "melody":
        (melody_folds if args.folds is not None else bench_melody).main(args)
    elif args.bench == "transcription":
        torch.set_num_threads(1)
        (bench_polyphonic if args.polyphonic else bench_transcription).run(args)
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        pianoroll(args.data, args.out, args.config, args.max_minutes, args.max_pieces, args.epochs)
    return 0


def pianoroll(data: Path, out: Path, config: Path, max_minutes: float = 60.0, max_pieces: int | None = None,
              epochs: int | None = None) -> dict:
    """Train the preset ``config`` on ``data``, test its best epoch; write ``out/results.json`` and return it."""
    from lightning.pytorch.callbacks import ModelCheckpoint  # Lightning only here: every other command starts faster

    from melodylm.commands.train import cli

    started = time.monotonic()
    existing_input(data, "--data")
    if not Path(config).is_file():
        raise UserError(f"config {config} does not exist")
    if max_minutes <= 0:
        raise UserError(f"--max-minutes must be > 0, got {max_minutes}")
    output_folder(out)
    seconds = int(max_minutes * 60)
    overrides = ["--config", str(config), "--data.init_args.path", str(data),
                 "--trainer.default_root_dir", str(out),
                 "--trainer.max_time", f"{seconds // 86400:02d}:{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:"
                                       f"{seconds % 60:02d}"]
    if _logger_class(config).endswith("WandbLogger"):
        overrides += ["--trainer.logger.init_args.save_dir", str(out),
                      "--trainer.logger.init_args.name", f"pianoroll-{Path(data).stem}"]
    if max_pieces:
        overrides += ["--data.init_args.max_pieces", str(max_pieces)]
    if epochs:
        overrides += ["--trainer.max_epochs", str(epochs)]
    run = cli(overrides, run=False)
    best = next((c for c in run.trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)
                 and c.monitor == "val/nll_frame"), None)
    if best is None:
        raise UserError(f"{config} has no ModelCheckpoint monitoring val/nll_frame: the bench tests the best epoch")
    best.dirpath = str(Path(out) / "checkpoints")
    run.trainer.fit(run.model, run.datamodule)
    if not best.best_model_path:
        raise UserError(f"training stopped before the first validation: raise --max-minutes (was {max_minutes})")
    train_minutes = (time.monotonic() - started) / 60
    dm, seed = run.datamodule, run.config.get("seed_everything") or 0
    results = bench_pianoroll.evaluate(load(best.best_model_path, kinds=("pianoroll_language_model",)), dm.pieces,
                                       Path(out), seed=int(seed))
    results.update({
        "data": {"file": Path(data).name, "sha256_16": bench_pianoroll.file_sha(data), "max_pieces": max_pieces},
        "epochs": run.trainer.current_epoch, "steps": run.trainer.global_step,
        "best_epoch_val_nll_frame": float(best.best_model_score),
        "train_minutes": round(train_minutes, 2), "torch_threads": torch.get_num_threads(),
        "config": {"file": str(config), "model": _plain(run.model.hparams), "data": _plain(dm.hparams),
                   "max_minutes": max_minutes, "epochs_override": epochs,
                   "schedule_minutes": round((run.model.hparams.get("time_horizon") or 0) * max_minutes, 2)},
        "test_nll_frame": results["test"]["nll_frame"], "test_nll_token": results["test"]["nll_token"],
        "valid_nll_frame": results["valid"]["nll_frame"], "frames": results["test"]["frames"],
        "pieces": results["test"]["pieces"], "minutes": round((time.monotonic() - started) / 60, 2),
    })
    Path(out, "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log.info("test NLL %.3f nats/frame (%.3f nats/token) over %d frames of %d pieces; valid %.3f nats/frame; "
             "%.1f min; wrote %s", results["test_nll_frame"], results["test_nll_token"], results["frames"],
             results["pieces"], results["valid_nll_frame"], results["minutes"], Path(out) / "results.json")
    return results


def _logger_class(config: Path) -> str:
    try:
        raw = yaml.safe_load(Path(config).read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{config} is not valid YAML: {err}") from err
    logger = (raw.get("trainer") or {}).get("logger")
    return str(logger.get("class_path", "")) if isinstance(logger, dict) else ""


def _plain(hparams) -> dict:
    return json.loads(json.dumps(dict(hparams), default=list))
