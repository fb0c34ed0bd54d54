"""``melodylm bench melody``: Kneser-Ney by hand, bits per pitch, the cross-validation folds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from melodylm.api.lm import MusicLM
from melodylm.checkpoint import load
from melodylm.data.store import Pieces, save_split
from melodylm.data.tokenizer import build_tokenizer, tokenizer_to_json
from melodylm.evaluation.bench_melody import (ADAPT_LRS, STM_ORDERS, STM_WEIGHTS, PitchTokens, choose_adapt_lr,
                                              fit_short_term, lm_nll, mixture)
from melodylm.evaluation.melody_folds import corpus_pieces, fold_of, transposed_copies
from melodylm.evaluation.ngram import KneserNey, short_term_probs
from melodylm.models.components.rnn_lm import RecurrentLM

from conftest import REPO, run_cli


def test_kneser_ney_by_hand():
    # Symbols 0..3 (3 never seen). Padded with one start symbol S: S 0 1 0 1 | S 1 0 | S 2.
    kn = KneserNey([[0, 1, 0, 1], [1, 0], [2]], vocab=4, max_order=2)
    # Unigram continuation counts (distinct symbols seen before w): 0 <- {S, 1}, 1 <- {0, S}, 2 <- {S}: 2, 2, 1 of
    # 5; counts of counts n1 = 1, n2 = 2 -> D1 = 1 / 5; three types seen.
    d1 = 1 / 5
    p1 = np.array([max(c - d1, 0) / 5 + d1 * 3 / 5 / 4 for c in (2, 2, 1, 0)])
    np.testing.assert_allclose(p1, [0.39, 0.39, 0.19, 0.03])
    # Bigram raw counts: S -> {0: 1, 1: 1, 2: 1}, 0 -> {1: 2}, 1 -> {0: 2}; n1 = 3, n2 = 2 -> D2 = 3 / 7.
    d2 = 3 / 7
    np.testing.assert_allclose(kn.distribution([0], 2), [d2 / 2 * p1[0], (2 - d2) / 2 + d2 / 2 * p1[1],
                                                         d2 / 2 * p1[2], d2 / 2 * p1[3]])
    np.testing.assert_allclose(kn.distribution([], 2), [(1 - d2) / 3 + d2 * p1[0], (1 - d2) / 3 + d2 * p1[1],
                                                        (1 - d2) / 3 + d2 * p1[2], d2 * p1[3]])
    np.testing.assert_allclose(kn.distribution([2], 2), p1)  # history never seen: the lower order alone
    np.testing.assert_allclose(kn.logprobs([0, 1, 3], 2),
                               np.log([kn.distribution([], 2)[0], kn.distribution([0], 2)[1],
                                       kn.distribution([1], 2)[3]]))
    # order 1 is the unigram of raw counts {0: 3, 1: 3, 2: 1} of 7; n1 = 1, n2 = 0 -> D = 1
    np.testing.assert_allclose(kn.distribution([0, 1], 1), [2 / 7 + 3 / 7 / 4] * 2 + [0 + 3 / 7 / 4] * 2)


def test_kneser_ney_sums_to_one_everywhere():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 6, rng.integers(1, 30)) for _ in range(40)]  # symbols 6..8 never occur
    kn = KneserNey(seqs, vocab=9, max_order=5)
    for order in range(1, 6):
        for history in ([], [0], [8, 8], list(seqs[0][:7]), list(rng.integers(0, 9, 10))):
            p = kn.distribution(history, order)
            assert p.shape == (9,) and (p > 0).all()
            assert p.sum() == pytest.approx(1.0, abs=1e-12)
    # more context helps on the training data itself
    assert kn.nll(seqs, 3) < kn.nll(seqs, 1)


def test_short_term_model_learns_the_piece_so_far():
    # order 1 over {0, 1}: nothing seen -> uniform; after [0] the one count is a singleton (D = 1): still uniform;
    # after [0, 0] one count of two (n1 = 0 -> D floored at 0.05): 0.5 * 0.05 / 2 + (2 - 0.05) / 2
    np.testing.assert_allclose(short_term_probs([0, 0, 0], 2, 1), [0.5, 0.5, 0.5 * 0.05 / 2 + 1.95 / 2])
    motif = [3, 5, 7, 5] * 6
    assert short_term_probs(motif, 12, 3)[-4:].min() > 0.8  # the fifth time round the motif is expected


def test_long_term_plus_short_term_n_gram():
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 12, 30) for _ in range(20)]  # no tune repeats itself in the corpus...
    val = [np.array([1, 4, 6, 4] * 5), np.array([2, 9, 9, 2] * 5)]  # ...but the held-out tunes do
    test = [np.array([8, 3, 5, 3, 0] * 4)]
    ltm = KneserNey(train, 12, 3)
    both = fit_short_term(ltm, 2, val, test, 12)
    assert both["weight"] in STM_WEIGHTS and both["order"] in STM_ORDERS
    alone = ltm.nll(test, 2) / 20 / math.log(2)
    mixed = np.log((1 - both["weight"]) * np.exp(ltm.logprobs(test[0], 2))
                   + both["weight"] * short_term_probs(test[0], 12, both["order"]))
    assert both["test_bits_pitch"] == pytest.approx(-mixed.sum() / 20 / math.log(2))
    assert both["test_bits_pitch"] < alone - 1  # a repeating tune is far cheaper with the piece's own model


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("REMI")


def _piece(tokenizer, pitches, position=0):
    v = tokenizer.vocab
    ids = [v["Bar_None"], v["TimeSig_4/4"]]
    for i, p in enumerate(pitches):
        ids += [v[f"Position_{(position + 24 * i) % 96}"], v[f"Pitch_{p}"], v["Duration_1.0.24"]]
        if i % 4 == 3:
            ids.append(v["Bar_None"])
    return np.array(ids)


def test_pitch_tokens_map_and_transpose(tokenizer):
    pitches = PitchTokens(tokenizer)
    assert len(pitches) == 88 and pitches.lowest == 21
    piece = _piece(tokenizer, [60, 62, 64])
    np.testing.assert_array_equal(pitches.sequence(piece), [39, 41, 43])
    up = pitches.transpose(piece, 2)
    np.testing.assert_array_equal(pitches.sequence(up), [41, 43, 45])
    np.testing.assert_array_equal(up[~pitches.mask(piece)], piece[~pitches.mask(piece)])  # rhythm untouched
    assert pitches.transpose(_piece(tokenizer, [22, 60]), -2) is None  # 20 is below the range
    copies = transposed_copies([piece, _piece(tokenizer, [107])], pitches, -1, 2)
    assert len(copies) == 4 + 3  # 108 + 2 would leave the range


def test_lm_bits_per_pitch_is_the_sum_of_pitch_token_logprobs(tokenizer):
    torch.manual_seed(0)
    lm = MusicLM(RecurrentLM(len(tokenizer), 8, 16, 1, "lstm", 0.0), tokenizer)
    pieces = [_piece(tokenizer, [60, 62, 64, 65, 67]), _piece(tokenizer, [70, 69], position=12),
              _piece(tokenizer, [55] * 9)]
    total, pitch = lm_nll(lm, pieces, PitchTokens(tokenizer), batch=2)
    names = {i: t for t, i in tokenizer.vocab.items()}
    for piece, t, p in zip(pieces, total, pitch):
        lp = lm.decoder.token_logprobs([piece.tolist()])[0].double().numpy()  # one piece alone, EOS last
        assert len(lp) == len(piece) + 1
        assert t == pytest.approx(-lp.sum(), rel=1e-5)
        assert p == pytest.approx(-sum(x for x, i in zip(lp, piece) if names[int(i)].startswith("Pitch_")), rel=1e-5)
    # dynamic evaluation: each piece adapted on its own, from the same weights
    total, pitch = lm_nll(lm, pieces, PitchTokens(tokenizer), batch=2, adapt_lr=0.3)
    for piece, t in zip(pieces, total):
        assert t == pytest.approx(-lm.decoder.adapted_logprobs(piece.tolist(), 0.3).double().sum().item(), rel=1e-5)
    chosen = choose_adapt_lr(lm, pieces, PitchTokens(tokenizer))
    assert set(chosen["val_bits_pitch"]) == set(ADAPT_LRS) and chosen["lr"] == min(chosen["val_bits_pitch"],
                                                                                  key=chosen["val_bits_pitch"].get)
    notes = sum(int(PitchTokens(tokenizer).mask(p).sum()) for p in pieces)
    assert chosen["val_bits_pitch"][0.0] == pytest.approx(float(lm_nll(lm, pieces, PitchTokens(tokenizer))[1].sum())
                                                          / notes / math.log(2))


def test_folds_are_a_deterministic_partition():
    rng = np.random.default_rng(1)
    pieces = [rng.integers(0, 500, rng.integers(5, 40)) for _ in range(53)]
    fold = fold_of(pieces, 10)
    assert sorted(set(fold.tolist())) == list(range(10))  # every piece in exactly one fold, every fold used
    assert sorted(np.bincount(fold).tolist()) == [5] * 7 + [6] * 3
    order = rng.permutation(len(pieces))
    np.testing.assert_array_equal(fold_of([pieces[i] for i in order], 10), fold[order])  # by content, not place


def test_corpus_pieces_pool_the_splits_and_drop_repeated_melodies(tmp_path, tokenizer):
    pitches = PitchTokens(tokenizer)
    a, b, c = _piece(tokenizer, [60, 62, 64]), _piece(tokenizer, [60, 59]), _piece(tokenizer, [67, 69, 71])
    save_split(tmp_path, "train", [a, pitches.transpose(a, 1), b])  # a with one transposed copy, then b
    save_split(tmp_path, "val", [a.copy()])  # the same tokens again
    save_split(tmp_path, "test", [c])  # a's intervals in another key: the same melody
    rows = [("train", 1), ("train", 0), ("val", 0), ("test", 0)]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps({"split": s, "transposed_copies": n}) + "\n"
                                                     for s, n in rows))
    kept, counts = corpus_pieces(tmp_path, pitches)
    assert [p.tolist() for p in kept] == [a.tolist(), b.tolist()]
    assert counts == {"pieces": 4, "duplicate_tokens": 1, "duplicate_intervals": 1, "used": 2, "notes": 5}


def test_mixture_averages_the_members_probabilities():
    a = [np.log([0.5, 0.2]), np.log([0.9])]
    b = [np.log([0.1, 0.4]), np.log([0.3])]
    mixed = mixture([a, b])
    np.testing.assert_allclose(np.exp(mixed[0]), [0.3, 0.3])
    np.testing.assert_allclose(np.exp(mixed[1]), [0.6])
    np.testing.assert_allclose(mixture([a])[0], a[0])  # one member is itself


def test_an_ensemble_of_one_lm_twice_scores_as_the_lm(tokenizer):
    torch.manual_seed(0)
    lm = MusicLM(RecurrentLM(len(tokenizer), 8, 16, 1, "lstm", 0.0), tokenizer)
    other = MusicLM(RecurrentLM(len(tokenizer), 8, 16, 1, "lstm", 0.0), tokenizer)
    pieces = [_piece(tokenizer, [60, 62, 64, 65, 67]), _piece(tokenizer, [70, 69], position=12)]
    pitches = PitchTokens(tokenizer)
    for got, want in zip(lm_nll([lm, lm], pieces, pitches), lm_nll(lm, pieces, pitches)):
        np.testing.assert_allclose(got, want, rtol=1e-9)
    both = lm_nll([lm, other], pieces, pitches)[1]
    alone = [lm_nll(m, pieces, pitches)[1] for m in (lm, other)]
    assert (both <= (alone[0] + alone[1]) / 2 + 1e-9).all()  # -log is convex: never worse than the members' mean


@pytest.mark.slow
def test_cross_validation_runs_one_fold(tmp_path, prepared):
    out = tmp_path / "cv"
    args = ("bench", "melody", "--folds", "3", "--run-folds", "1", "--config", str(REPO / "configs" / "debug.yaml"),
            "--data", str(prepared), "--out", str(out), "--threads", "1", "--adapt", "--seeds", "2")
    run_cli(*args, cwd=tmp_path)
    results = json.loads((out / "folds.json").read_text())
    (fold,) = results["per_fold"]
    assert sum(fold["pieces"].values()) == results["corpus"]["used"]
    assert 1 <= fold["kn_order"] <= 6 and (out / "fold-0" / "data" / "tokens" / "train.npy").is_file()
    assert 0 < fold["kn_test_bits_pitch"] < math.log2(88)
    assert fold["lstm_test_bits_note"] > fold["lstm_test_bits_pitch"] > 0
    assert results["summary"]["LSTM"]["folds"] == 1
    assert fold["lstm_adapt_lr"] in ADAPT_LRS and math.isfinite(fold["lstm_adapt_test_bits_pitch"])
    assert fold["lstm_adapt_val_bits_pitch"]["0.0"] == pytest.approx(fold["lstm_val_bits_pitch"], rel=1e-6)  # no step
    assert results["summary"]["LSTM, dynamic evaluation"]["folds"] == 1
    assert fold["kn_stm_weight"] in STM_WEIGHTS and fold["kn_stm_order"] in STM_ORDERS
    assert 0 < fold["kn_stm_test_bits_pitch"] < math.log2(88)
    assert "Kneser-Ney, long-term + short-term" in results["summary"]
    assert json.loads((out / "fold-0" / "result.json").read_text()) == fold  # what another process's summary reads
    # two members, seeds 0 and 1 (debug.yaml's seed_everything is 0), and their ensemble scored as the mixture
    assert [t["seed"] for t in fold["lstm_training"]] == [0, 1]
    assert fold["member_test_bits_pitch"][0] == fold["lstm_test_bits_pitch"]
    assert fold["member_test_bits_pitch"][1] != fold["lstm_test_bits_pitch"]  # another seed, another model
    members = [load(t["checkpoint"], kinds=("language_model",)) for t in fold["lstm_training"]]
    pitches = PitchTokens(members[0].tokenizer)
    test = Pieces(out / "fold-0" / "data", "test")
    pieces = [test[i].tolist() for i in range(len(test))]
    by_hand = 0.0  # each pitch's probability: the mean of the two members' probabilities of it
    for ids in pieces:
        p = np.mean([np.exp(m.decoder.token_logprobs([ids])[0].double().numpy()) for m in members], axis=0)
        by_hand -= np.log(p[:-1][pitches.mask(ids)]).sum()
    assert fold["ensemble_test_bits_pitch"] == pytest.approx(by_hand / fold["test_notes"] / math.log(2), rel=1e-6)
    assert fold["ensemble_test_bits_pitch"] <= fold["members_mean_test_bits_pitch"]
    assert fold["ensemble_adapt_lr"] in ADAPT_LRS and "LSTM ensemble, dynamic evaluation" in results["summary"]
    # run again: the members are loaded, not trained again, and the figures are the same
    stamps = [(out / "fold-0" / f"seed-{s}" / "trained.json").stat().st_mtime_ns for s in (0, 1)]
    run_cli(*args, cwd=tmp_path)
    assert [(out / "fold-0" / f"seed-{s}" / "trained.json").stat().st_mtime_ns for s in (0, 1)] == stamps
    again = json.loads((out / "folds.json").read_text())["per_fold"][0]
    assert again["ensemble_test_bits_pitch"] == pytest.approx(fold["ensemble_test_bits_pitch"], rel=1e-9)
    assert run_cli("bench", "melody", "--ckpt", fold["lstm_training"][0]["checkpoint"], "--data", str(prepared),
                   "--seeds", "2", check=False, cwd=tmp_path).stderr.strip().splitlines()[-1].endswith(
        "--seeds goes with --folds (the members are trained per fold)")
