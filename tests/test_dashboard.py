"""Audio rendering and the SampleDashboard callback (wandb offline, then disabled)."""

from __future__ import annotations

import json
import logging
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from symusic import Note, Score, Tempo, Track

from melodylm.audio import render_wav, synthesizer
from melodylm.models.callbacks import SampleDashboard
from tests.conftest import REPO

FLUIDSYNTH = synthesizer() == "fluidsynth"


def four_notes() -> Score:
    """C4 E4 G4 C5, one quarter note each at 120 bpm: exactly 2.0 seconds."""
    score = Score(480)
    score.tempos.append(Tempo(0, 120.0))
    track = Track(program=0)
    for i, pitch in enumerate((60, 64, 67, 72)):
        track.notes.append(Note(i * 480, 480, pitch, 90))
    score.tracks.append(track)
    return score


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples ``(time, channels)`` in [-1, 1] and the sample rate (Hz)."""
    with wave.open(str(path)) as f:
        assert f.getsampwidth() == 2
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").reshape(-1, f.getnchannels())
        return pcm / 32768.0, f.getframerate()


# --- audio ---------------------------------------------------------------------------


@pytest.mark.parametrize("synth", [
    "sine",
    pytest.param("fluidsynth", marks=pytest.mark.skipif(
        not FLUIDSYNTH, reason="needs the fluidsynth program and a GM soundfont (apt-get install fluidsynth "
        "fluid-soundfont-gm)")),
])
def test_render_wav_is_audible_and_as_long_as_the_notes(tmp_path, synth):
    path = render_wav(four_notes(), tmp_path / f"{synth}.wav", sample_rate=22050, synth=synth)
    audio, rate = read_wav(path)
    assert rate == 22050
    assert abs(len(audio) / rate - 2.0) <= 1.0
    assert 0.5 < np.abs(audio).max() < 1.0  # normalised, not clipped
    first_note = audio[: rate // 2]
    assert np.sqrt((first_note**2).mean()) > 0.01  # sound from the start, not a silent file


def test_render_wav_of_an_empty_score_is_short_silence(tmp_path):
    audio, rate = read_wav(render_wav(Score(480), tmp_path / "empty.wav"))
    assert 0 < len(audio) <= rate and not audio.any()


def test_synthesizer_falls_back_to_sine_without_a_soundfont(monkeypatch, tmp_path):
    monkeypatch.setenv("MELODYLM_SOUNDFONT", str(tmp_path / "missing.sf2"))
    assert synthesizer() == "sine"
    audio, _ = read_wav(render_wav(four_notes(), tmp_path / "auto.wav"))
    assert audio.shape[1] == 1  # the sine rendering is mono


def test_render_wav_refuses_an_unknown_synth(tmp_path):
    with pytest.raises(ValueError, match="synth"):
        render_wav(four_notes(), tmp_path / "x.wav", synth="organ")


# --- the callback on its own -----------------------------------------------------------


def test_bad_sampling_settings_fail_at_construction():
    with pytest.raises(ValueError, match="top-p"):
        SampleDashboard(top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SampleDashboard(temperature=0.0)
    with pytest.raises(ValueError):
        SampleDashboard(every_n_epochs=0)


def test_the_dashboard_samples_the_training_model_itself(prepared, monkeypatch):
    """No copy (to the CPU or anywhere): the decoder wraps the module being trained, on its device."""
    from melodylm.data.datamodules import TokenDataModule
    from melodylm.models import callbacks
    from melodylm.models.components.rnn_lm import RecurrentLM

    wrapped = []
    real = callbacks.MusicLM
    monkeypatch.setattr(callbacks, "MusicLM", lambda model, *args: wrapped.append(model) or real(model, *args))
    dm = TokenDataModule(data_dir=str(prepared))
    model = RecurrentLM(dm.vocab_size, 8, 16, 1, "lstm", 0.0, False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pieces = SampleDashboard(num_samples=2, max_tokens=16, min_notes=0).sample(model, dm)
    assert len(wrapped) == 1 and wrapped[0] is model and len(pieces) == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("training", [True, False])
def test_sampling_leaves_the_model_mode_as_it_was(prepared, training):
    from melodylm.data.datamodules import TokenDataModule
    from melodylm.models.components.rnn_lm import RecurrentLM

    dm = TokenDataModule(data_dir=str(prepared))
    model = RecurrentLM(dm.vocab_size, 8, 16, 1, "lstm", 0.0, False).train(training)
    pieces = SampleDashboard(num_samples=2, max_tokens=32, min_notes=0).sample(model, dm)
    assert model.training is training
    assert len(pieces) == 2 and all(len(s.ids) <= 32 for s, _ in pieces)


def test_written_rows_carry_the_scalar_music_metrics(prepared, tmp_path):
    from melodylm.data.datamodules import TokenDataModule
    from melodylm.evaluation.music import piece_metrics
    from melodylm.models.components.rnn_lm import RecurrentLM

    dm = TokenDataModule(data_dir=str(prepared))
    dashboard = SampleDashboard(num_samples=1, max_tokens=32, min_notes=4, audio=False)
    pieces = dashboard.sample(RecurrentLM(dm.vocab_size, 8, 16, 1, "lstm", 0.0, False), dm)
    (row,) = dashboard.write(pieces, tmp_path)
    metrics = piece_metrics(pieces[0][1])
    scalars = {k for k, v in metrics.items() if isinstance(v, (int, float))}
    assert row["note_count"] == pieces[0][1].note_num() > 0
    assert set(row) == {"sample", "tokens", "logprob", "ended_with_eos", "seconds"} | scalars
    assert scalars < set(metrics)  # the histograms stay out of the table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample-00.mid", "sample-00.png", "samples.json"]


# --- the callback in a real fit ----------------------------------------------------------


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline run's ``run-*.wandb`` file.

    The file is a LevelDB-style log (wandb's own format): a 7-byte ``:W&B``
    header, then 32 KiB blocks of chunks ``crc32 (4) | length (2, LE) | type (1) | data``;
    type 1 is a whole record, 2/3/4 its first/middle/last part.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, parts, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def fit_debug(prepared: Path, root: Path, monkeypatch, *extra: str) -> Path:
    """``melodylm fit`` with the debug preset plus a small SampleDashboard, in-process, in ``root``."""
    import wandb

    from melodylm.commands import train

    monkeypatch.chdir(root)  # the preset's relative paths (checkpoints/debug, its wandb save_dir) land here
    monkeypatch.setenv("WANDB_DATA_DIR", str(root / "wandb-data"))  # wandb's staging area, not ~/.local/share
    monkeypatch.setenv("WANDB_CACHE_DIR", str(root / "wandb-cache"))
    monkeypatch.setattr(sys, "argv", sys.argv)  # train.cli replaces it
    try:
        train.cli([
            "fit", "--config", str(REPO / "configs" / "debug.yaml"), "--data.init_args.data_dir", str(prepared),
            "--trainer.enable_progress_bar=false",
            "--trainer.callbacks+=melodylm.models.callbacks.SampleDashboard",
            "--trainer.callbacks.num_samples=2", "--trainer.callbacks.max_tokens=96", *extra,
        ])
    finally:
        wandb.finish()  # flush the offline run; the next WandbLogger must not reuse it
        wandb.teardown()  # wandb reads WANDB_MODE once per process setup: the next test may set another
    return root / "checkpoints" / "debug"


@pytest.mark.slow
def test_dashboard_logs_media_table_and_midi_artifact_offline(prepared, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = fit_debug(prepared, tmp_path, monkeypatch)

    # the files a person opens: debug preset = 2 epochs, 2 samples each
    for epoch in ("epoch-00", "epoch-01"):
        folder = out / "samples" / epoch
        assert sorted(p.name for p in folder.iterdir()) == [
            "sample-00.mid", "sample-00.png", "sample-00.wav",
            "sample-01.mid", "sample-01.png", "sample-01.wav", "samples.json"]
        summary = json.loads((folder / "samples.json").read_text())
        assert summary["settings"]["num"] == 2
        assert {"sample", "tokens", "logprob", "note_count", "seconds"} <= summary["samples"][0].keys()

    # the offline run: media files under files/media, records in run-*.wandb
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    media = run_dir / "files" / "media"
    assert len(list((media / "images" / "samples").glob("pianoroll_*.png"))) == 4
    assert len(list((media / "audio" / "samples" / "audio").glob("sample-0[01]_*.wav"))) == 4
    tables = sorted((media / "table" / "samples").glob("metrics_*.table.json"))
    assert len(tables) == 2
    table = json.loads(tables[0].read_text())
    assert {"sample", "tokens", "logprob", "ended_with_eos", "note_count"} <= set(table["columns"])
    assert len(table["data"]) == 2

    (log_file,) = run_dir.glob("run-*.wandb")
    records = wandb_records(log_file)
    history_keys = {item.key or item.nested_key[0]
                    for r in records if r.WhichOneof("record_type") == "history" for item in r.history.item}
    assert {"samples/pianoroll", "samples/audio/sample-00", "samples/metrics", "samples/note_count"} <= history_keys
    artifacts = [r.artifact for r in records
                 if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "samples"]
    assert [sorted(a.aliases) for a in artifacts] == [["epoch-00", "latest"], ["epoch-01", "latest"]]
    for artifact, epoch in zip(artifacts, ("epoch-00", "epoch-01")):
        entries = {e.path: Path(e.local_path) for e in artifact.manifest.contents}
        assert sorted(entries) == ["sample-00.mid", "sample-01.mid"]
        for name, local in entries.items():
            assert local.is_absolute() and local == (out / "samples" / epoch / name).resolve()
            Score(str(local))  # a MIDI file symusic reads back


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "extra", "reason"), [
    ("disabled", (), "wandb is disabled"),
    ("offline", ("--trainer.logger=false",), "no WandbLogger"),
])
def test_dashboard_is_a_quiet_no_op_without_wandb(prepared, tmp_path, monkeypatch, caplog, mode, extra, reason):
    monkeypatch.setenv("WANDB_MODE", mode)
    with caplog.at_level(logging.INFO, logger="melodylm.models.callbacks"):
        out = fit_debug(prepared, tmp_path, monkeypatch, *extra)
    assert (out / "last.ckpt").is_file()  # training finished normally
    assert not (out / "samples").exists()
    said = [r.getMessage() for r in caplog.records if r.name == "melodylm.models.callbacks"]
    assert len(said) == 1 and reason in said[0]  # once, not every epoch
