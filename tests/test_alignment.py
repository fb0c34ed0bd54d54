"""Aligned conditioning: the condition's frames, the target's clock, and one answer from training and decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from symusic import Note, Score, Tempo, TimeSignature, Track

from melodylm.data.alignment import (
    FEATURES,
    FRAMES_PER_BEAT,
    TokenClock,
    aligned_features,
    condition_frames,
    input_times,
    token_times,
)
from melodylm.data.chords import chords_to_score, parse_chord_symbols
from melodylm.data.midi import read_score
from melodylm.data.pairs import Pair, PairDataset, collate_pairs, pitch_table, transpose_ids
from melodylm.data.tokenizer import SpecialIds, build_tokenizer, score_to_ids
from melodylm.decoding.core import Decoder
from melodylm.decoding.timeline import Timeline
from melodylm.models.components.seq2seq import ConditionedLM, Seq2Seq

TOK = build_tokenizer("REMI")
SPECIAL = SpecialIds(TOK)


def _melody(notes, numerator=4, denominator=4, tpq=480) -> Score:
    score = Score(tpq)
    score.time_signatures.append(TimeSignature(0, numerator, denominator))
    score.tempos.append(Tempo(0, 120.0))
    track = Track(name="melody")
    for beat, beats, pitch in notes:
        track.notes.append(Note(int(beat * tpq), int(beats * tpq), pitch, 90))
    score.tracks.append(track)
    return score


def _timeline_times(ids) -> list[float]:
    clock, out = Timeline(TOK, 1), []
    for i in ids:
        clock.update(torch.tensor([i]))
        out.append(float(clock.beats()[0]))
    return out


def test_token_times_follow_the_decoders_timeline(oneills_midi):
    """The numpy clock that serves training counts time exactly as the decoder's Timeline, in any meter."""
    clock = TokenClock(TOK)
    scores = [read_score(p.read_bytes()) for p in oneills_midi[:8]]
    scores += [_melody([(0, 1, 60), (1.5, 0.5, 62), (3, 3, 64)], 3, 4),
               _melody([(0, 1.5, 67), (1.5, 0.5, 65), (4.5, 1.5, 64)], 6, 8)]
    meters = set()
    for score in scores:
        ids = score_to_ids(TOK, score)
        meters |= {TOK[i] for i in ids if TOK[i].startswith("TimeSig")}
        assert np.allclose(token_times(ids, clock), _timeline_times(ids))
    assert {"TimeSig_3/4", "TimeSig_6/8"} <= meters


def test_condition_frames_of_block_chords():
    """C for two beats, then G for two: what sounds, the lowest tone, and the next two beats weighted."""
    frames = condition_frames(score_to_ids(TOK, chords_to_score(parse_chord_symbols("C G"), beats=2)), TOK)
    c, g = np.zeros(12), np.zeros(12)
    c[[0, 4, 7]], g[[7, 11, 2]] = 1, 1
    beat = FRAMES_PER_BEAT
    assert frames.shape == (4 * beat + 1, FEATURES)
    assert np.array_equal(frames[: 2 * beat, :12], np.tile(c, (2 * beat, 1)))
    assert np.array_equal(frames[2 * beat : 4 * beat, :12], np.tile(g, (2 * beat, 1)))
    assert frames[0, 12:24].argmax() == 0 and frames[0, 12:24].sum() == 1  # C in the bass
    assert frames[2 * beat, 12:24].argmax() == 7  # G in the bass
    assert np.array_equal(frames[0, 24:], c)  # the next two beats: C only
    ahead = frames[beat, 24:]  # one beat of C, one of G: G sounds throughout, the others half of it
    assert ahead[7] == 1.0 and all(ahead[p] == 0.5 for p in (0, 4, 11, 2)) and ahead.sum() == 3.0
    assert not frames[-1].any()  # the end: silence
    past = aligned_features(frames, np.array([0.0, 2.0, 100.0]))
    assert np.array_equal(past[0], frames[0]) and np.array_equal(past[1], frames[2 * beat]) and not past[2].any()


def test_transpose_moves_both_sides_and_stays_in_the_vocabulary():
    pitches = pitch_table(TOK)
    ids = score_to_ids(TOK, _melody([(0, 1, 60), (1, 1, 64)]))
    chords = score_to_ids(TOK, chords_to_score(parse_chord_symbols("C"), beats=2))
    up, chords_up = transpose_ids(pitches, [np.array(ids), np.array(chords)], 3)
    assert [TOK[i] for i in up if TOK[i].startswith("Pitch")] == ["Pitch_63", "Pitch_67"]
    assert [TOK[i] for i in chords_up if TOK[i].startswith("Pitch")] == ["Pitch_51", "Pitch_55", "Pitch_58"]
    assert [TOK[i] for i in up if not TOK[i].startswith("Pitch")] == [TOK[i] for i in ids
                                                                        if not TOK[i].startswith("Pitch")]
    high = score_to_ids(TOK, _melody([(0, 1, 106)]))  # the vocabulary ends at 108: +6 becomes +2
    (moved,) = transpose_ids(pitches, [np.array(high)], 6)
    assert [TOK[i] for i in moved if TOK[i].startswith("Pitch")] == ["Pitch_108"]


@pytest.mark.parametrize("memory", [False, True], ids=["features", "aligned-memory"])
def test_training_and_decoding_see_the_same_features(memory):
    """Teacher-forced logits from the data set's features equal the decoding core's, step by step."""
    torch.manual_seed(0)
    model = Seq2Seq(len(TOK), 16, 24, 1, True, 0.0, aligned=True, aligned_memory=memory).eval()
    chords = score_to_ids(TOK, chords_to_score(parse_chord_symbols("C Am F G7"), beats=2, bpm=120))
    melody = score_to_ids(TOK, _melody([(0, 1, 72), (1, 0.5, 71), (1.5, 0.5, 69), (2, 2, 69), (4, 1.5, 65),
                                        (6, 1, 67), (7, 1, 71)]))
    dataset = PairDataset([Pair("x", "test", np.array(chords), np.array(melody))], SPECIAL, tokenizer=TOK)
    batch = collate_pairs([dataset[0]], SPECIAL.pad)
    expected = input_times(melody, TokenClock(TOK))
    assert batch["features"].shape == (1, len(melody) + 1, FEATURES)
    assert np.allclose(batch["features"][0].numpy(), aligned_features(condition_frames(chords, TOK), expected))
    chord_times, now = token_times(chords, TokenClock(TOK)), batch["now"][0].numpy()
    assert now.shape == expected.shape and (now[1:] >= now[:-1]).all()
    assert (chord_times[now] <= expected + 1e-9).all()  # the last chord token at or before each input's time
    later = now + 1 < len(chords)
    assert (chord_times[np.minimum(now + 1, len(chords) - 1)][later] > expected[later]).all()
    assert now[expected >= 6].min() > now[expected < 2].max()  # G7's tokens come after C's
    with torch.no_grad():
        trained = model(batch["source"], batch["source_mask"], batch["inputs"], batch["features"], batch["now"])[0]
        bound = ConditionedLM.from_ids(model, [chords], SPECIAL.pad, TOK)
        whole, _ = bound(batch["inputs"])
        state, steps = None, []
        for t in range(batch["inputs"].size(1)):
            logits, state = bound.step(batch["inputs"][:, t], state)
            steps.append(logits[0])
    assert torch.allclose(trained, whole[0], atol=1e-5)
    assert torch.allclose(trained, torch.stack(steps), atol=1e-5)
    decoder = Decoder(bound, SPECIAL.bos, SPECIAL.eos, SPECIAL.pad)
    scored = decoder.token_logprobs([melody])[0]
    direct = torch.log_softmax(trained, -1)[torch.arange(len(melody) + 1), torch.tensor([*melody, SPECIAL.eos])]
    assert torch.allclose(scored, direct, atol=1e-5)
    assert len(decoder.beam_search(beam_size=3, stop=12)) >= 1


def test_an_aligned_model_refuses_to_run_without_its_tokenizer():
    model = Seq2Seq(len(TOK), 8, 8, aligned=True)
    with pytest.raises(ValueError, match="tokenizer"):
        ConditionedLM.from_ids(model, [[4, 5]], SPECIAL.pad)


def test_training_windows_cover_the_same_bars_on_both_sides():
    """Chords (about 11 tokens a bar) and a busy melody (about 26): a window ends at the same bar on both sides,
    fits max_len on each, and has an end token only where the tune ends."""
    bars = 24
    chords = np.array(score_to_ids(TOK, chords_to_score(parse_chord_symbols(" ".join(["C", "G"] * (bars // 2))))))
    melody = np.array(score_to_ids(TOK, _melody([(b / 2, 0.5, 60 + b % 12) for b in range(8 * bars)])))
    bar = TOK.vocab["Bar_None"]
    dataset = PairDataset([Pair("x", "train", chords, melody)], SPECIAL, max_len=96, bar_id=bar)
    torch.manual_seed(0)
    ends = 0
    for _ in range(40):
        src, tgt = dataset[0]
        assert len(src) <= 96 and len(tgt) <= 96 + 2 and tgt[0] == SPECIAL.bos
        assert src[0] == bar and tgt[1] == bar
        src_bars, tgt_bars = int((src == bar).sum()), int((tgt == bar).sum())
        if tgt[-1] == SPECIAL.eos:
            ends += 1
            assert np.array_equal(tgt[1:-1].numpy(), melody[-(len(tgt) - 2):])  # the tune's own end
        else:
            assert src_bars == tgt_bars >= 2  # cut at a bar line both sides share
    assert 0 < ends < 40
