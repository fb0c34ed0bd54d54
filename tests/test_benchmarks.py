"""``melodylm bench pianoroll`` and ``melodylm bench melody``: conversions, metrics, recipes, end to end."""

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from melodylm.data import pianoroll as PR
from melodylm.errors import UserError
from melodylm.evaluation.bench_melody import NGram
from melodylm.models.frame_lm_module import FrameLanguageModel
from tests.conftest import REPO, SHARED_DATA, run_cli

# A LightningCLI config as `melodylm bench pianoroll --config` takes (the bench sets data.init_args.path).
TINY_CONFIG = """\
seed_everything: 0
trainer:
  accelerator: cpu
  max_epochs: 1
  num_sanity_val_steps: 0
  enable_model_summary: false
  logger:
    class_path: lightning.pytorch.loggers.WandbLogger
    init_args: {project: melodylm, save_dir: checkpoints/tiny}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {filename: best, monitor: val/nll_frame, mode: min, save_last: true}
model:
  class_path: melodylm.models.frame_lm_module.FrameLanguageModel
  init_args: {embedding_dim: 16, hidden_size: 32, num_layers: 1, dropout: 0.0, warmup_steps: 2}
data:
  class_path: melodylm.data.datamodules.RollDataModule
  init_args: {path: x.mat, seq_len: 64, batch_size: 8, eval_batch_size: 8, transpose: [-3, 3]}
"""


def tiny_config(folder, **data) -> str:
    """TINY_CONFIG in ``folder/tiny.yaml``, with more ``data.init_args`` (YAML flow values) if given."""
    extra = "".join(f", {k}: {v}" for k, v in data.items())
    path = folder / "tiny.yaml"
    path.write_text(TINY_CONFIG.replace("transpose: [-3, 3]}", f"transpose: [-3, 3]{extra}}}"))
    return str(path)


def random_rolls(rng, n, frames=(6, 20)):
    rolls = []
    for _ in range(n):
        roll = np.zeros((rng.integers(*frames), 88), dtype=np.uint8)
        for t in range(len(roll)):
            roll[t, rng.choice(np.arange(30, 60), size=rng.integers(0, 4), replace=False)] = 1
        rolls.append(roll)
    return rolls


def write_mat(path, splits):
    cells = {}
    for key, rolls in splits.items():
        cell = np.empty((1, len(rolls)), dtype=object)
        for i, roll in enumerate(rolls):
            cell[0, i] = roll
        cells[key] = cell
    savemat(path, cells)
    return path


@pytest.fixture
def tiny_mat(tmp_path):
    rng = np.random.default_rng(0)
    return write_mat(tmp_path / "tiny.mat", {k: random_rolls(rng, n) for k, n in
                                             (("traindata", 12), ("validdata", 4), ("testdata", 5))})


def test_a_lossy_conversion_stops_the_run():
    roll = np.zeros((3, 88), dtype=bool)
    roll[1, 40] = True
    PR.check_round_trip({"train": [roll]}, "x.mat")
    lossy = dataclasses.replace(PR.ENCODINGS["keys"], decode=lambda ids: np.zeros((3, 88), dtype=bool))
    with pytest.raises(UserError, match=r"train\[0\] \(tokens\)"):
        PR.check_round_trip({"train": [roll]}, "x.mat", lossy)


def test_shipped_configs_parse_with_lightning_cli(tmp_path, tiny_mat, monkeypatch):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from melodylm.commands.train import cli
    from melodylm.data.datamodules import RollDataModule

    monkeypatch.chdir(tmp_path)  # whatever the presets' relative paths create lands here
    runs = {name: cli(["--config", str(REPO / "configs" / "pianoroll" / f"{name}.yaml"),
                       "--data.init_args.path", str(tiny_mat), "--trainer.logger", "false"], run=False)
            for name in ("jsb", "nottingham")}
    for run in runs.values():
        assert isinstance(run.model, FrameLanguageModel) and isinstance(run.datamodule, RollDataModule)
        assert run.model.hparams.vocab_size == run.datamodule.vocab_size  # linked from the data
        assert run.model.hparams.time_horizon == 0.95
        run.model._trainer = run.trainer  # the schedule's horizon: 95% of the preset's hour
        assert run.model.schedule_seconds() == pytest.approx(0.95 * 3600, abs=5)
        assert any(isinstance(c, ModelCheckpoint) and c.monitor == "val/nll_frame" and c.mode == "min"
                   for c in run.trainer.callbacks)  # what the bench tests: the best epoch
    jsb, nottingham = (runs[name].datamodule.hparams for name in ("jsb", "nottingham"))
    assert jsb.transpose[0] < 0 < jsb.transpose[1]  # 229 chorales: every key helps
    assert jsb.encoding == "keys" and not jsb.carry_state and jsb.frames_per_beat == 1
    assert list(nottingham.transpose) == [0, 0]  # 694 tunes and an hour: the data's own key (chosen on validation)
    assert nottingham.carry_state and nottingham.encoding == "hold" and nottingham.frames_per_beat == 2
    assert runs["nottingham"].model.hparams.vocab_size == PR.HOLD_VOCAB_SIZE


def test_bad_data_settings_are_user_errors(tiny_mat, tmp_path):
    from melodylm.data.datamodules import RollDataModule

    with pytest.raises(UserError, match="unknown piano-roll encoding 'deltas' \\(known: keys, changes, hold\\)"):
        RollDataModule(str(tiny_mat), encoding="deltas")
    with pytest.raises(UserError, match="data.transpose must include 0"):
        RollDataModule(str(tiny_mat), transpose=(1, 3))
    with pytest.raises(UserError, match="frames_per_beat must be >= 1"):
        RollDataModule(str(tiny_mat), frames_per_beat=0)
    for rolls, message in BAD_ROLLS:
        with pytest.raises(UserError, match=message):
            RollDataModule(str(write_mat(tmp_path / "bad.mat", rolls)))
    with pytest.raises(UserError, match="none.mat does not exist"):
        RollDataModule(str(tmp_path / "none.mat"))


BAD_ROLLS = [
    ({"traindata": [np.full((3, 88), 2)], "validdata": [np.zeros((3, 88))], "testdata": [np.zeros((3, 88))]},
     "traindata\\[0\\] is not a binary"),
    ({"traindata": [np.zeros((0, 88))], "validdata": [np.zeros((3, 88))], "testdata": [np.zeros((3, 88))]},
     "traindata\\[0\\] has no frames"),
]


def one_error_line(proc) -> str:
    """The one ``melodylm: error:`` line of a failed command, never a traceback (a UserError raised while
    LightningCLI builds the data module reaches the user wrapped by jsonargparse; the CLI finds it; Lightning
    may log "Seed set to 0" before it)."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("melodylm: error:")]
    return line


def test_a_bad_config_value_is_one_line(tmp_path, tiny_mat):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_CONFIG.replace("path: x.mat", f"path: {tiny_mat}").replace(
        "transpose: [-3, 3]}", "transpose: [-3, 3], encoding: deltas}"))
    for args in (("fit", "--config", str(bad), "--trainer.logger", "false"),
                 ("bench", "pianoroll", "--data", str(tiny_mat), "--config", str(bad), "--out", str(tmp_path / "o"))):
        proc = run_cli(*args, cwd=tmp_path, check=False)
        assert "unknown piano-roll encoding 'deltas'" in one_error_line(proc)


@pytest.mark.parametrize("encoding, carry", [("keys", False), ("changes", False), ("hold", False), ("keys", True)])
def test_bench_pianoroll_end_to_end_on_any_file(tmp_path, tiny_mat, encoding, carry):
    config = tiny_config(tmp_path, encoding=encoding, carry_state=str(carry).lower())
    out = tmp_path / "run"
    run_cli("bench", "pianoroll", "--data", str(tiny_mat), "--out", str(out), "--config", config)
    results = json.loads((out / "results.json").read_text())
    for key in ("test_nll_frame", "test_nll_token", "valid_nll_frame", "frames", "pieces", "minutes", "config",
                "best_epoch_val_nll_frame", "vocabulary", "valid", "test", "samples"):
        assert key in results
    splits = PR.load_mat(tiny_mat)
    assert results["pieces"] == 5 and results["frames"] == sum(len(r) for r in splits["test"])
    assert results["valid"]["pieces"] == 4 and results["valid"]["frames"] == sum(len(r) for r in splits["val"])
    assert results["config"]["file"] == config and results["config"]["epochs_override"] is None
    assert results["config"]["model"]["hidden_size"] == 32 and results["config"]["data"]["carry_state"] == carry
    assert results["config"]["data"]["encoding"] == encoding and results["config"]["data"]["path"] == str(tiny_mat)
    enc = PR.encoding(encoding)
    assert results["vocabulary"] == {"encoding": encoding, "size": enc.vocab_size, "tokens": enc.description,
                                     "frames_per_beat": 1}
    # Lightning's validation metric and the decoding core's whole-piece scoring agree.
    assert math.isclose(results["best_epoch_val_nll_frame"], results["valid_nll_frame"], rel_tol=1e-4)
    # Recompute the test NLL per frame from the checkpoint, token by token.
    module = FrameLanguageModel(vocab_size=enc.vocab_size, embedding_dim=16, hidden_size=32, num_layers=1)
    module.load_state_dict(torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"])
    model = module.model.eval()
    total = 0.0
    with torch.no_grad():
        for roll in splits["test"]:
            ids = [PR.BOS, *enc.encode(roll)]
            logp = model(torch.tensor([ids[:-1]]))[0].log_softmax(-1)[0]
            total -= float(logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
    assert math.isclose(results["test_nll_frame"], total / results["frames"], rel_tol=1e-4)
    assert results["test_nll_frame"] < 88 * math.log(2)  # better than coin flips on every key
    assert (out / "checkpoints" / "last.ckpt").is_file()
    mids = sorted((out / "samples").glob("*.mid"))
    assert [m.name for m in mids] == [f"sample-{i:03d}.mid" for i in range(4)] == \
        [Path(p).name for p in results["samples"]]
    assert all(m.with_suffix(".png").is_file() and m.with_suffix(".json").is_file() for m in mids)


def test_bench_pianoroll_logs_to_wandb_offline_by_default(tmp_path, tiny_mat, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run_cli("bench", "pianoroll", "--data", str(tiny_mat), "--out", str(tmp_path / "run"),
            "--config", tiny_config(tmp_path), wandb_mode=None)  # no WANDB_MODE and no API key: must not ask to log in
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_bench_pianoroll_bad_input_is_one_line(tmp_path):
    config = tiny_config(tmp_path)
    for i, (rolls, message) in enumerate(BAD_ROLLS):
        bad = write_mat(tmp_path / f"bad{i}.mat", rolls)
        proc = run_cli("bench", "pianoroll", "--data", str(bad), "--out", str(tmp_path / "o"), "--config", config,
                       check=False)
        assert re.search(message, one_error_line(proc))
    proc = run_cli("bench", "pianoroll", "--data", str(tmp_path / "none.mat"), "--out", str(tmp_path / "o"),
                   "--config", config, check=False)
    assert "none.mat does not exist" in one_error_line(proc)


def test_bench_pianoroll_needs_an_existing_config(tmp_path, tiny_mat):
    proc = run_cli("bench", "pianoroll", "--data", str(tiny_mat), "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "--config" in proc.stderr  # argparse: the flag is required
    proc = run_cli("bench", "pianoroll", "--data", str(tiny_mat), "--out", str(tmp_path / "o"),
                   "--config", str(tmp_path / "none.yaml"), check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr


# --- a piano-roll checkpoint: load, sample, score ----------------------------------------------------------


@pytest.fixture(scope="module")
def roll_bench(tmp_path_factory):
    """A tiny bench run (hold tokens, two frames per beat) and its .mat file."""
    root = tmp_path_factory.mktemp("roll-bench")
    rng = np.random.default_rng(1)
    mat = write_mat(root / "tiny.mat", {k: random_rolls(rng, n) for k, n in
                                        (("traindata", 12), ("validdata", 4), ("testdata", 5))})
    out = root / "run"
    run_cli("bench", "pianoroll", "--data", str(mat), "--out", str(out),
            "--config", tiny_config(root, encoding="hold", frames_per_beat=2))
    return mat, out


def test_a_piano_roll_checkpoint_loads_and_scores_as_the_bench_did(roll_bench, tmp_path):
    import melodylm
    from melodylm.api.pianoroll import PianoRollLM

    mat, out = roll_bench
    results = json.loads((out / "results.json").read_text())
    lm = melodylm.load(out / "checkpoints")  # the run folder: its best.ckpt
    assert isinstance(lm, PianoRollLM) and lm.encoding.name == "hold" and lm.frames_per_beat == 2
    test = PR.load_mat(mat)["test"]
    scores = [lm.score(roll) for roll in test]
    for roll, r in zip(test, scores):
        assert r.frames == len(roll) and r.tokens == len(PR.encoding("hold").encode(roll))  # EOS included
        assert r.nll_frame == pytest.approx(-r.logprob / len(roll))
        tokens = PR.encoding("hold").encode(roll)[:-1]
        assert lm.score(tokens).logprob == pytest.approx(r.logprob, abs=1e-4)  # frame tokens score the same
        total = float(lm.decoder.token_logprobs([tokens])[0].sum())
        assert r.logprob == pytest.approx(total, abs=1e-4)  # the sum of the token log-probabilities
    # the split's total, as results.json has it
    assert sum(-r.logprob for r in scores) / results["frames"] == pytest.approx(results["test_nll_frame"], rel=1e-6)
    # the same music as MIDI on the checkpoint's grid (trailing silence is not in a MIDI file)
    roll = test[0][: int(np.flatnonzero(test[0].any(1)).max()) + 1]
    midi = tmp_path / "roll.mid"
    lm.to_score(PR.encoding("hold").encode(roll)[:-1]).dump_midi(str(midi))
    assert lm.score(midi).logprob == pytest.approx(lm.score(roll).logprob, abs=1e-4)
    assert lm.score(midi).frames == len(roll)


def test_sample_and_score_take_a_piano_roll_checkpoint(roll_bench, tmp_path):
    from symusic import Score

    _, out = roll_bench
    samples = tmp_path / "S"
    run_cli("sample", "--ckpt", str(out / "checkpoints"), "--num", "2", "--no-wav", "--out", str(samples))
    mids = sorted(samples.glob("*.mid"))
    assert [m.name for m in mids] == ["sample-000.mid", "sample-001.mid"]
    for mid in mids:
        assert Score(str(mid)).note_num() > 0 and mid.with_suffix(".png").is_file()
        assert not mid.with_suffix(".wav").exists()
    proc = run_cli("score", "--ckpt", str(out / "checkpoints"), "--json", str(mids[0]))
    (row,) = [json.loads(line) for line in proc.stdout.splitlines()]
    frames = len(PR.score_to_grid(Score(str(mids[0])), frames_per_beat=2))
    assert row["frames"] == frames > 0
    assert row["nll_frame"] == pytest.approx(-row["logprob"] / frames) and row["nll_frame"] > 0
    assert row["nll_token"] == pytest.approx(-row["logprob"] / row["tokens"])
    proc = run_cli("sample", "--ckpt", str(out / "checkpoints"), "--key", "C major", "--out", str(tmp_path / "k"),
                   check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "a piano-roll model does not take key" in proc.stderr and not (tmp_path / "k").exists()


ROLLS = SHARED_DATA / "pianoroll" / "JSB_Chorales.mat"


@pytest.mark.skipif(not ROLLS.is_file(), reason=f"{ROLLS} is absent (set MELODYLM_SHARED_DATA)")
def test_bench_pianoroll_on_a_few_chorales(tmp_path):
    run_cli("bench", "pianoroll", "--data", str(ROLLS), "--out", str(tmp_path / "jsb"), "--config",
            tiny_config(tmp_path), "--max-pieces", "6")
    results = json.loads((tmp_path / "jsb" / "results.json").read_text())
    assert results["pieces"] == 6 and results["data"]["file"] == "JSB_Chorales.mat"
    assert 0 < results["test_nll_frame"] < 60


def test_ngram_baselines_by_hand():
    # BOS=1, EOS=2; one training sequence: BOS 5 5 EOS -> targets 5, 5, 2.
    ngram = NGram([np.array([1, 5, 5, 2])], vocab=6)
    uni = ngram.unigram(alpha=1.0)
    np.testing.assert_allclose(uni, np.array([1, 1, 2, 1, 1, 3]) / 9)
    seq = np.array([1, 5, 2])
    np.testing.assert_allclose(ngram.logprobs(seq, 1.0), np.log([3 / 9, 2 / 9]))
    # bigram: after 5 comes 5 once and EOS once; after BOS, 5 always.
    np.testing.assert_allclose(ngram.logprobs(seq, 1.0, weight=0.5),
                               np.log([0.5 * 3 / 9 + 0.5 * 1.0, 0.5 * 2 / 9 + 0.5 * 0.5]))
    # an unseen history falls back to the unigram
    np.testing.assert_allclose(ngram.logprobs(np.array([3, 5]), 1.0, weight=0.9), np.log([3 / 9]))


def test_bench_melody_beats_its_unigram(tmp_path, prepared, trained):
    import melodylm
    from melodylm.data.store import Pieces

    out = tmp_path / "melody.json"
    run_cli("bench", "melody", "--ckpt", str(trained), "--data", str(prepared), "--out", str(out))
    results = json.loads(out.read_text())
    rows = {r["model"].split(" (")[0]: r for r in results["rows"]}
    assert list(rows) == ["unigram", "bigram", "LSTM LM"]
    assert rows["LSTM LM"]["model"] == f"LSTM LM ({trained.name})"
    assert results["notes"] > 0 and results["tokens"] > results["notes"]
    assert rows["bigram"]["nll_note"] < rows["unigram"]["nll_note"]
    for r in rows.values():
        assert math.isclose(r["bits_note"], r["nll_note"] / math.log(2))
        assert math.isclose(r["nll_note"] * results["notes"], r["nll_token"] * results["tokens"])
    # The LSTM row is the checkpoint's own NLL of every test piece, EOS included.
    lm = melodylm.load(trained)
    test = Pieces(prepared, "test")
    assert results["pieces"] == len(test) and results["tokens"] == int(test.lengths().sum()) + len(test)
    total = -sum(float(lm.decoder.token_logprobs([test[i].tolist()])[0].sum()) for i in range(len(test)))
    assert rows["LSTM LM"]["nll_token"] == pytest.approx(total / results["tokens"], rel=1e-5)
    # The debug preset trains for 8 steps: its LSTM (5.4 nats/token measured) is not yet better than the unigram
    # (3.3) or the bigram (1.8), but it has left the uniform distribution over the vocabulary (6.4) well behind.
    assert rows["LSTM LM"]["nll_token"] < math.log(len(lm.tokenizer)) - 0.5
    # --adapt adds dynamic evaluation, its step size chosen on the validation split; the other rows stay
    run_cli("bench", "melody", "--ckpt", str(trained), "--data", str(prepared), "--out", str(out), "--adapt")
    again = json.loads(out.read_text())["rows"]
    assert again[:3] == results["rows"] and again[3]["model"].startswith("LSTM LM, dynamic evaluation")
    assert again[3]["adapt_lr"] in (0.0, 0.03, 0.1, 0.2, 0.3) and again[3]["bits_pitch"] > 0
