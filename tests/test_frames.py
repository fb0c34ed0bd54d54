"""Polyphonic transcription on a piano-roll LM's grid (melodylm.prior.frames): exact pieces, and the prior's gain."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest
import torch

from melodylm.api.pianoroll import PianoRollLM
from melodylm.data import pianoroll as PR
from melodylm.errors import UserError
from melodylm.evaluation.bench_polyphonic import scores
from melodylm.models.components.rnn_lm import RecurrentLM
from melodylm.prior import frames as FR
from melodylm.prior.posteriors import Posteriorgram
from tests.conftest import SHARED_DATA

JSB = SHARED_DATA / "pianoroll" / "JSB_Chorales.mat"
needs_jsb = pytest.mark.skipif(not JSB.is_file(), reason=f"{JSB} is absent (set MELODYLM_SHARED_DATA)")


def toy_roll() -> np.ndarray:
    """Twelve frames: a held triad, a held dyad, a silent frame, a held single key."""
    roll = np.zeros((12, PR.KEYS), bool)
    roll[0:4, [40, 44, 47]] = True
    roll[4:8, [41, 45]] = True
    roll[9:12, 39] = True
    return roll


def untrained(encoding: str, seed: int = 0) -> PianoRollLM:
    torch.manual_seed(seed)
    enc = PR.encoding(encoding)
    return PianoRollLM(RecurrentLM(vocab_size=enc.vocab_size, embedding_dim=16, hidden_size=32, num_layers=2), enc)


def test_best_frames_are_the_k_best_frames_in_order():
    rng = np.random.default_rng(0)
    odds = np.full(PR.KEYS, -30.0)
    odds[[3, 10, 20, 30, 50, 60]] = rng.normal(size=6) * 2
    got = FR.best_frames(odds, 25)
    keys = [3, 10, 20, 30, 50, 60]
    brute = sorted((sum(odds[k] for k in c) for r in range(7) for c in itertools.combinations(keys, r)), reverse=True)
    assert np.allclose([score for _, score in got], brute[:25])
    for frame, score in got:  # each score is its frame's
        assert np.isclose(odds[frame].sum(), score)
    assert len({f.tobytes() for f, _ in got}) == 25


def test_frame_tokens_rebuild_the_encoding_of_a_roll():
    roll = toy_roll()
    for name, enc in PR.ENCODINGS.items():
        prev, ids = np.zeros(PR.KEYS, bool), []
        for frame in roll:
            ids += FR.frame_tokens(enc, prev, frame)
            prev = frame
        assert ids == enc.encode(roll)[:-1], name


@pytest.mark.parametrize("encoding", sorted(PR.ENCODINGS))
def test_decode_feeds_the_encoding_of_its_result_and_its_lm_score_is_score(encoding):
    lm = untrained(encoding)
    rng = np.random.default_rng(1)
    roll = toy_roll()
    probs = np.clip(roll * 0.75 + rng.uniform(0, 0.45, roll.shape), 0, 1)
    result = FR.decode(lm, probs, lam=1.0, beam_size=4, candidates=6, theta=0.5)
    assert result.ids == lm.encoding.encode(result.roll)[:-1]
    assert result.lm == pytest.approx(lm.score(result.roll).logprob, abs=1e-3)
    odds = FR.log_odds(probs, 0.5)
    assert result.acoustic == pytest.approx(float(odds[result.roll].sum()), abs=1e-6)
    assert result.total == pytest.approx(result.acoustic + result.lm, abs=1e-3)


def test_without_the_lm_weight_the_beam_keeps_the_acoustic_frames():
    lm = untrained("hold")
    rng = np.random.default_rng(2)
    probs = np.clip(toy_roll() * 0.6 + rng.uniform(0, 0.5, (12, PR.KEYS)), 0, 1)
    for theta in (0.3, 0.5, 0.7):
        result = FR.decode(lm, probs, lam=0.0, beam_size=1, candidates=1, theta=theta)
        assert (result.roll == FR.threshold(probs, theta)).all()


def test_hmm_is_the_exact_viterbi_path_of_each_key():
    rng = np.random.default_rng(3)
    frames = 8
    probs = np.full((frames, PR.KEYS), 1e-3)
    probs[:, 40] = rng.uniform(0, 1, frames)
    trans = FR.key_transitions([toy_roll(), toy_roll()[::-1]])
    lam = 0.7
    best = max(itertools.product((0, 1), repeat=frames), key=lambda path: sum(
        lam * trans[40, a, b] + (FR.log_odds(probs[t:t + 1])[0, 40] if b else 0.0)
        for t, (a, b) in enumerate(zip((0,) + path[:-1], path))))
    got = FR.hmm(probs, trans, lam=lam)
    assert tuple(got[:, 40].astype(int)) == best
    assert not got[:, :40].any()  # keys never heard stay up


def test_key_transitions_count_the_training_rolls():
    roll = np.zeros((4, PR.KEYS), bool)
    roll[1:4, 5] = True  # the chain starts up: up -> up -> down -> down -> down
    logp = FR.key_transitions([roll], prior=0.0)
    assert np.allclose(np.exp(logp[5]), [[0.5, 0.5], [0.0, 1.0]])
    smoothed = np.exp(FR.key_transitions([roll], prior=1.0))
    assert np.allclose(smoothed.sum(axis=2), 1.0) and (smoothed > 0).all()  # every key borrows the pooled counts


def test_pool_averages_the_acoustic_frames_of_each_grid_frame():
    note = np.zeros((8, 88), np.float32)
    note[:, 10] = [0.2, 0.4, 0.6, 0.8, 1.0, 0.0, 0.5, 0.5]
    post = Posteriorgram(note, note, fps=4.0)  # acoustic frames every 0.25 s
    grid = FR.FrameGrid(qpm=120, frames_per_beat=1)  # 0.5 s grid frames
    probs = FR.pool(post, grid)
    assert probs.shape == (4, 88)
    assert np.allclose(probs[:, 10], [0.3, 0.7, 0.5, 0.5])
    assert FR.extent(probs, 0.6) == 2


def test_frame_scores_by_hand():
    grid = FR.FrameGrid(qpm=120, frames_per_beat=2)
    ref = np.zeros((4, PR.KEYS), bool)
    ref[0:2, 40] = ref[2:4, 44] = True
    est = ref.copy()
    est[3, 44] = False
    est[3, 50] = True
    s = scores(ref, est, grid)
    assert s["frame_precision"] == pytest.approx(3 / 4) and s["frame_recall"] == pytest.approx(3 / 4)
    assert s["frame_f1"] == pytest.approx(0.75)
    assert s["note_f1"] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))  # 2 of 3 estimated onsets are right


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="threshold"):
        FR.log_odds(np.zeros((1, PR.KEYS)), threshold=1.0)
    with pytest.raises(UserError, match="tempo"):
        FR.FrameGrid(qpm=0, frames_per_beat=1)
    with pytest.raises(UserError, match="beam size"):
        FR.decode(untrained("keys"), np.zeros((2, PR.KEYS)), beam_size=0)


def noisy_posteriors(roll: np.ndarray, rng) -> np.ndarray:
    """What an acoustic model gives for ``roll``: true keys 0.3-0.95, ghost notes an octave and a twelfth up."""
    p = np.where(roll, rng.uniform(0.3, 0.95, roll.shape), 0.3 * rng.uniform(0, 1, roll.shape) ** 4)
    ghost = np.zeros_like(roll)
    ghost[:, 12:] |= roll[:, :-12]
    ghost[:, 19:] |= roll[:, :-19]
    return np.where(ghost & ~roll, np.maximum(p, rng.uniform(0.1, 0.6, roll.shape)), p)


@pytest.mark.slow
@needs_jsb
def test_the_prior_recovers_real_chorales_better_than_the_acoustics_alone():
    """A small LM trained for a few seconds on JSB's training chorales cleans noisy test chorales."""
    torch.manual_seed(0)
    splits = PR.load_mat(JSB)
    enc = PR.encoding("keys")
    seqs = [torch.tensor([PR.BOS, *enc.encode(r)]) for r in splits["train"]]
    model = RecurrentLM(vocab_size=enc.vocab_size, embedding_dim=32, hidden_size=96, num_layers=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(200):
        picked = [seqs[i] for i in rng.integers(len(seqs), size=16)]
        starts = [(s, int(rng.integers(max(1, len(s) - 129)))) for s in picked]
        width = min(len(s[i : i + 129]) for s, i in starts)
        x = torch.stack([s[i : i + width] for s, i in starts])
        logits, _ = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    lm = PianoRollLM(model, enc, frames_per_beat=1)
    grid = FR.FrameGrid(120, 1)
    acoustic, prior = [], []
    for i, roll in enumerate(splits["test"][:4]):
        probs = noisy_posteriors(roll, np.random.default_rng(i))
        acoustic.append(scores(roll, FR.threshold(probs, 0.5), grid)["frame_f1"])
        prior.append(scores(roll, FR.decode(lm, probs, lam=1.0, beam_size=4, candidates=8, theta=0.5).roll,
                            grid)["frame_f1"])
    assert np.mean(prior) > np.mean(acoustic) + 0.04, (acoustic, prior)
    assert sum(p > a for p, a in zip(prior, acoustic)) >= 3


def test_polyphonic_transcribe_without_the_extra_says_how_to_install(tmp_path, monkeypatch, capsys):
    from melodylm import cli
    from melodylm.audio import write_pcm16

    wav = write_pcm16(tmp_path / "a.wav", np.zeros(2205), 22050)
    monkeypatch.setitem(sys.modules, "basic_pitch", None)  # as if not installed
    assert cli.main(["transcribe", str(wav), "--polyphonic", "--no-prior", "--out", str(tmp_path / "a.mid")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("melodylm: error: transcription needs the optional 'transcribe' extra")
    assert "make transcribe-extra" in err and len(err.splitlines()) == 1


def test_polyphonic_transcribe_user_errors(tmp_path, capsys):
    from melodylm import cli

    wav = tmp_path / "none.wav"
    assert cli.main(["transcribe", str(wav), "--polyphonic", "--out", str(tmp_path / "a.mid")]) == 2
    assert "--ckpt (a piano-roll checkpoint) is required unless --no-prior" in capsys.readouterr().err
    assert cli.main(["transcribe", str(wav), "--polyphonic", "--no-prior", "--threshold", "1.5",
                     "--out", str(tmp_path / "a.mid")]) == 2
    assert "--threshold must be in (0, 1)" in capsys.readouterr().err
    assert cli.main(["transcribe", str(wav), "--polyphonic", "--no-prior", "--out", str(tmp_path / "a.mid")]) == 2
    assert "does not exist" in capsys.readouterr().err
