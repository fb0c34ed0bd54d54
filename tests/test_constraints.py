"""Constraint processors: exact ids kept on hand-made histories, and sampled pieces that obey them.

The sampling tests wrap an untrained ``RecurrentLM`` (it proposes garbage)
in the real ``Decoder`` and check every sample with miditok's own
``tokens_errors`` and on the notes miditok decodes.
"""

import pytest
import torch
from miditok import TokSequence

from melodylm.decoding import constraints as C
from melodylm.decoding import processors as P
from melodylm.decoding.core import Decoder
from melodylm.decoding.grammar import GrammarMask
from melodylm.models.components.rnn_lm import RecurrentLM
from melodylm.data.tokenizer import SpecialIds, build_tokenizer, note_counts

KINDS = ("REMI", "TSD", "MIDILike")
NUM, MAX_TOKENS = 64, 300


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is faster, and a shared machine stalls torch's parallel regions."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toks():
    return {kind: build_tokenizer(kind) for kind in KINDS}


def ids_of(tok, *names: str) -> list[int]:
    return [tok.vocab[n] for n in names]


def history(tok, *names: str) -> torch.Tensor:
    """``(1, time)``: BOS then the named tokens."""
    return torch.tensor([[tok.vocab["BOS_None"], *ids_of(tok, *names)]])


def kept(proc, ids: torch.Tensor, vocab_size: int) -> set[int]:
    out = proc(ids, torch.zeros(ids.size(0), vocab_size))
    return set(torch.isfinite(out[0]).nonzero().flatten().tolist())


def named(tok, ids: set[int]) -> set[str]:
    return {tok[i] for i in ids}


def of_type(tok, *types: str) -> set[str]:
    return {t for t in tok.vocab if t.split("_")[0] in types}


# --- RepetitionPenalty ---------------------------------------------------------------


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -1.0, 3.0, -4.0, 5.0, 0.5]])
    ids = torch.tensor([[4, 0, 1, 3]])  # with window 3 only ids 0, 1, 3 count
    out = P.RepetitionPenalty(2.0, window=3)(ids, logits)
    torch.testing.assert_close(out, torch.tensor([[1.0, -2.0, 3.0, -8.0, 5.0, 0.5]]))
    torch.testing.assert_close(P.RepetitionPenalty(1.0, 8)(ids, logits), logits)
    with pytest.raises(ValueError):
        P.RepetitionPenalty(0.0)
    with pytest.raises(ValueError):
        P.RepetitionPenalty(1.2, window=0)


# --- pitch filters ------------------------------------------------------------------


def test_pitch_range_bans_exactly_the_note_starts_outside(toks):
    tok = toks["REMI"]
    out = named(tok, kept(C.PitchRange(tok, 60, 62), history(tok), len(tok)))
    assert out & of_type(tok, "Pitch", "PitchDrum") == {"Pitch_60", "Pitch_61", "PitchDrum_60", "PitchDrum_61"}
    assert of_type(tok, "Position", "Duration", "Bar", "TimeSig", "EOS") <= out

    tok = toks["MIDILike"]
    out = named(tok, kept(C.PitchRange(tok, 100, 128), history(tok), len(tok)))
    assert out & of_type(tok, "NoteOn", "DrumOn") == {f"NoteOn_{p}" for p in range(100, 128)} & set(tok.vocab)
    assert "NoteOn_100" in out
    assert of_type(tok, "NoteOff", "DrumOff", "TimeShift") <= out  # sounding notes can always end


def test_allowed_pitch_classes_keep_exactly_the_scale(toks):
    tok = toks["TSD"]
    proc = C.AllowedPitchClasses(tok, "D major")
    assert proc.pitch_classes == {1, 2, 4, 6, 7, 9, 11}
    out = named(tok, kept(proc, history(tok), len(tok)))
    pitches = {int(t.split("_")[1]) for t in out & of_type(tok, "Pitch")}
    vocab_pitches = {int(t.split("_")[1]) for t in of_type(tok, "Pitch")}
    assert pitches == {p for p in vocab_pitches if p % 12 in {1, 2, 4, 6, 7, 9, 11}}
    assert of_type(tok, "Duration", "TimeShift") <= out
    assert kept(C.AllowedPitchClasses(tok, [0, 4, 7]), history(tok), len(tok)) == kept(
        C.AllowedPitchClasses(tok, {7, 0, 4}), history(tok), len(tok))


@pytest.mark.parametrize("name, classes", [
    ("C major", {0, 2, 4, 5, 7, 9, 11}),
    ("A minor", {0, 2, 4, 5, 7, 9, 11}),
    ("D major", {2, 4, 6, 7, 9, 11, 1}),
    ("E dorian", {4, 6, 7, 9, 11, 1, 2}),
    ("Bb mixolydian", {10, 0, 2, 3, 5, 7, 8}),
    ("f# harmonic minor", {6, 8, 9, 11, 1, 2, 5}),
    ("G major pentatonic", {7, 9, 11, 2, 4}),
])
def test_scale_pitch_classes(name, classes):
    assert C.scale_pitch_classes(name) == classes


@pytest.mark.parametrize("name", ["H major", "C bebop", "major", "C", "C## major", ""])
def test_unknown_scale_raises(name):
    with pytest.raises(ValueError, match="unknown key"):
        C.scale_pitch_classes(name)


def test_impossible_pitch_constraints_raise_at_construction(toks):
    tok = toks["REMI"]
    with pytest.raises(ValueError, match="no pitch"):
        C.PitchRange(tok, 0, 20)  # the vocabulary starts at 21
    with pytest.raises(ValueError):
        C.PitchRange(tok, 70, 60)
    with pytest.raises(ValueError):
        C.AllowedPitchClasses(tok, [])
    with pytest.raises(ValueError):
        C.AllowedPitchClasses(tok, [12])
    only_c_sharp = C.PitchRange(tok, 61, 62)
    d_major = C.AllowedPitchClasses(tok, "D major")
    c_major = C.AllowedPitchClasses(tok, "C major")
    with pytest.raises(ValueError, match="no pitch"):
        only_c_sharp & c_major
    both = only_c_sharp & d_major  # C#4 is in D major
    assert named(tok, kept(both, history(tok), len(tok))) & of_type(tok, "Pitch") == {"Pitch_61"}


def test_pitch_filters_look_inside_bpe_merges_and_stateful_ones_refuse_bpe():
    tok = build_tokenizer("REMI")
    v = tok.vocab

    def melody(pitches):
        ids = [v["Bar_None"], v["TimeSig_4/4"]]
        for i, p in enumerate(pitches):
            ids += [v[f"Position_{24 * (i % 4)}"], v[f"Pitch_{p}"], v["Duration_1.0.24"]]
            if i % 4 == 3:
                ids += [v["Bar_None"], v["TimeSig_4/4"]]
        return ids

    def bars(ids):  # what miditok's training iterator feeds
        seq = TokSequence(ids=ids)
        tok.complete_sequence(seq)
        return tok._ids_to_bytes([b.ids for b in seq.split_per_bars() if len(b)], as_one_str=True)

    tok.train(vocab_size=len(tok) + 20, model="BPE",
              iterator=[bars(melody([60 + (i * k) % 12 for i in range(16)])) for k in range(1, 9)])
    assert tok.is_trained
    learned = {vid: tok._vocab_learned_bytes_to_tokens[b] for b, vid in tok.vocab_model.items()}
    merges = {vid: base for vid, base in learned.items() if len(base) > 1}
    assert any("Pitch_60" in base for base in merges.values()) and any("Pitch_66" in base for base in merges.values())
    out = kept(C.PitchRange(tok, 60, 64), torch.tensor([[1]]), len(tok))
    for vid, base in learned.items():
        pitches = [int(t.split("_")[1]) for t in base if t.startswith(("Pitch_", "PitchDrum_"))]
        assert (vid in out) == all(60 <= p < 64 for p in pitches), base
    with pytest.raises(ValueError, match="without BPE"):
        GrammarMask(tok)
    with pytest.raises(ValueError, match="without BPE"):
        C.Monophonic(tok)


# --- grammar mask: exact ids on hand-made histories ---------------------------------


def test_grammar_remi_exact_ids(toks):
    tok = toks["REMI"]
    g = GrammarMask(tok)
    assert named(tok, kept(g, history(tok), len(tok))) == {"Bar_None", "EOS_None"}
    assert named(tok, kept(g, history(tok, "Bar_None"), len(tok))) == of_type(tok, "TimeSig") | {"EOS_None"}
    h = ("Bar_None", "TimeSig_3/4", "Position_10", "Pitch_60")
    assert named(tok, kept(g, history(tok, *h), len(tok))) == of_type(tok, "Duration")  # no EOS mid-note
    out = named(tok, kept(g, history(tok, *h, "Duration_1.0.24"), len(tok)))
    positions = {f"Position_{p}" for p in range(11, 72)}  # forward, and inside a 3/4 bar (72 positions)
    notes = of_type(tok, "Pitch", "PitchDrum") - {"Pitch_60", "PitchDrum_60"}  # not twice at one onset
    assert out == positions | notes | {"Bar_None", "EOS_None"}
    out = named(tok, kept(g, history(tok, *h, "Duration_1.0.24", "Bar_None", "TimeSig_2/4"), len(tok)))
    assert out == {f"Position_{p}" for p in range(48)} | of_type(tok, "Pitch", "PitchDrum") | {"Bar_None", "EOS_None"}


def test_grammar_tsd_exact_ids(toks):
    tok = toks["TSD"]
    g = GrammarMask(tok)
    start = of_type(tok, "Pitch", "PitchDrum", "TimeShift") | {"EOS_None"}
    assert named(tok, kept(g, history(tok), len(tok))) == start
    assert named(tok, kept(g, history(tok, "Pitch_60"), len(tok))) == of_type(tok, "Duration")
    after = named(tok, kept(g, history(tok, "Pitch_60", "Duration_0.12.24"), len(tok)))
    assert after == start - {"Pitch_60", "PitchDrum_60"}
    moved = named(tok, kept(g, history(tok, "Pitch_60", "Duration_0.12.24", "TimeShift_0.12.24"), len(tok)))
    assert moved == start


def test_grammar_midilike_exact_ids(toks):
    tok = toks["MIDILike"]
    g = GrammarMask(tok)
    ons = of_type(tok, "NoteOn", "DrumOn")
    assert named(tok, kept(g, history(tok), len(tok))) == ons | of_type(tok, "TimeShift") | {"EOS_None"}
    out = named(tok, kept(g, history(tok, "NoteOn_60"), len(tok)))
    assert out == ons - {"NoteOn_60", "DrumOn_60"} | of_type(tok, "TimeShift")  # no EOS while 60 sounds
    out = named(tok, kept(g, history(tok, "NoteOn_60", "TimeShift_1.0.24"), len(tok)))
    assert out == ons - {"NoteOn_60", "DrumOn_60"} | of_type(tok, "TimeShift") | {"NoteOff_60", "DrumOff_60"}
    out = named(tok, kept(g, history(tok, "NoteOn_60", "TimeShift_1.0.24", "NoteOff_60"), len(tok)))
    assert out == ons | of_type(tok, "TimeShift") | {"EOS_None"}  # NoteOff -> NoteOff needs a sounding note


def test_grammar_after_eos_or_pad_allows_only_eos(toks):
    for tok in toks.values():
        g = GrammarMask(tok, max_tokens=5)
        for tail in (("EOS_None",), ("EOS_None", "PAD_None")):
            h = ("Bar_None", *tail) if type(tok).__name__ == "REMI" else tail
            assert named(tok, kept(g, history(tok, *h), len(tok))) == {"EOS_None"}


def test_grammar_budget_plans_the_ending(toks):
    tok = toks["MIDILike"]
    g = GrammarMask(tok, max_tokens=3)  # the run starts at [BOS]: three tokens to sample
    kept(g, history(tok), len(tok))
    assert named(tok, kept(g, history(tok, "NoteOn_60"), len(tok))) == of_type(tok, "TimeShift")
    assert named(tok, kept(g, history(tok, "NoteOn_60", "TimeShift_0.1.24"), len(tok))) == {"NoteOff_60", "DrumOff_60"}

    tok = toks["REMI"]
    g = GrammarMask(tok, max_tokens=4)
    kept(g, history(tok), len(tok))
    kept(g, history(tok, "Bar_None"), len(tok))
    # two tokens left: a Position would need a Pitch and a Duration after it
    out = named(tok, kept(g, history(tok, "Bar_None", "TimeSig_4/4"), len(tok)))
    assert out == of_type(tok, "Bar", "Pitch", "PitchDrum") | {"EOS_None"}
    out = named(tok, kept(g, history(tok, "Bar_None", "TimeSig_4/4", "Bar_None"), len(tok)))
    assert out == of_type(tok, "TimeSig") | {"EOS_None"}


def test_grammar_budget_too_short_for_a_primer_keeps_the_plain_grammar(toks):
    tok = toks["MIDILike"]
    primer = ("NoteOn_60", "NoteOn_62", "NoteOn_64", "NoteOn_65")  # four NoteOffs and a TimeShift to close
    g = GrammarMask(tok, max_tokens=2)
    shift = "TimeShift_0.1.24"
    for more in ((), (shift,), (shift, "NoteOff_60"), (shift, "NoteOff_60", "NoteOff_62")):
        h = history(tok, *primer, *more)  # cannot finish in time, then past the budget: no row of -inf
        assert kept(g, h, len(tok)) == kept(GrammarMask(tok), h, len(tok))
    out = named(tok, kept(g, h, len(tok)))
    assert {"NoteOff_64", "NoteOff_65"} <= out and not {"NoteOff_60", "NoteOn_64", "EOS_None"} & out


# --- Monophonic: exact ids --------------------------------------------------------------


def test_monophonic_remi_waits_for_the_note_to_end(toks):
    tok = toks["REMI"]
    m = C.Monophonic(tok)
    h = ("Bar_None", "TimeSig_4/4", "Position_12", "Pitch_60", "Duration_1.0.24")  # ends at position 36
    banned = set(range(len(tok))) - kept(m, history(tok, *h), len(tok))
    too_early = {f"Position_{p}" for p in range(36)}
    assert named(tok, banned) == of_type(tok, "Pitch", "PitchDrum") | too_early
    free = named(tok, kept(m, history(tok, *h, "Position_36"), len(tok)))
    assert of_type(tok, "Pitch", "PitchDrum") <= free
    long = ("Bar_None", "TimeSig_4/4", "Position_72", "Pitch_60", "Duration_2.0.24")  # two beats past the bar
    out = named(tok, kept(m, history(tok, *long, "Bar_None", "TimeSig_3/8"), len(tok)))
    assert {f"Position_{p}" for p in range(48)} & out == set()  # 3/8: one position per tick
    assert {f"Position_{p}" for p in range(48, 288)} <= out and "Bar_None" in out


def test_monophonic_tsd_and_midilike(toks):
    tok = toks["TSD"]
    m = C.Monophonic(tok)
    h = ("Pitch_60", "Duration_0.12.24", "TimeShift_0.6.24")
    assert not of_type(tok, "Pitch", "PitchDrum") & named(tok, kept(m, history(tok, *h), len(tok)))
    assert of_type(tok, "Pitch") <= named(tok, kept(m, history(tok, *h, "TimeShift_0.6.24"), len(tok)))

    tok = toks["MIDILike"]
    m = C.Monophonic(tok)
    assert not of_type(tok, "NoteOn", "DrumOn") & named(tok, kept(m, history(tok, "NoteOn_60"), len(tok)))
    done = ("NoteOn_60", "TimeShift_0.6.24", "NoteOff_60")
    assert of_type(tok, "NoteOn") <= named(tok, kept(m, history(tok, *done), len(tok)))


def test_processors_do_not_modify_their_input(toks):
    tok = toks["REMI"]
    ids = history(tok, "Bar_None", "TimeSig_4/4", "Position_0", "Pitch_60", "Duration_1.0.24").repeat(2, 1)
    logits = torch.randn(2, len(tok))
    before_ids, before_logits = ids.clone(), logits.clone()
    for proc in (GrammarMask(tok, max_tokens=10), C.Monophonic(tok), P.RepetitionPenalty(1.5, 3),
                 C.PitchRange(tok, 60, 72), C.AllowedPitchClasses(tok, "A minor")):
        out = proc(ids, logits)
        assert out is not logits
        torch.testing.assert_close(logits, before_logits)
        assert torch.equal(ids, before_ids)


# --- carried state: rebuilt, advanced, reordered --------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_state_matches_a_fresh_replay(toks, kind):
    """Whatever way the history arrives (growing buffer, new tensors, reordered rows), the mask equals a replay."""
    tok, sp = toks[kind], SpecialIds(toks[kind])
    gen = torch.Generator().manual_seed(0)
    fresh = lambda budget: [GrammarMask(tok, max_tokens=budget), C.Monophonic(tok)]  # noqa: E731
    buf = torch.full((3, 41), sp.pad)
    buf[:, 0] = sp.bos
    grown, copied = fresh(40), fresh(40)
    for t in range(1, 41):
        ids = buf[:, :t]
        logits = torch.randn(3, len(tok), generator=gen)
        replay = fresh(40 - (t - 1))  # its budget counts from this history
        outs = [P.apply(grown, ids, logits), P.apply(copied, ids.clone(), logits), P.apply(replay, ids, logits)]
        torch.testing.assert_close(outs[0], outs[2])
        torch.testing.assert_close(outs[1], outs[2])
        if t % 7 == 0:  # beam search: rows reordered and duplicated, then one token longer
            order = torch.tensor([2, 0, 2])
            nxt = torch.multinomial(outs[0].softmax(-1), 1, generator=gen)
            buf = torch.cat([buf[order], torch.full((3, 1), sp.pad)], 1)[:, :41]
            buf[:, t] = nxt[order, 0]
        else:
            buf[:, t] = torch.multinomial(outs[0].softmax(-1), 1, generator=gen)[:, 0]


# --- sampled pieces -------------------------------------------------------------------


def make_decoder(tok, seed: int = 0) -> Decoder:
    sp = SpecialIds(tok)
    torch.manual_seed(seed)
    model = RecurrentLM(len(tok), embedding_dim=16, hidden_size=32, num_layers=1, cell="gru", dropout=0.0)
    return Decoder(model, bos=sp.bos, eos=sp.eos, pad=sp.pad)


def errors(tok, ids: list[int]) -> float:
    return tok.tokens_errors(TokSequence(ids=list(ids)))


def notes(tok, ids: list[int]):
    score = tok.decode([list(ids)])
    return sorted((n for track in score.tracks for n in track.notes), key=lambda n: (n.start, n.pitch))


@pytest.mark.parametrize("kind", KINDS)
def test_grammar_samples_have_zero_errors(toks, kind):
    tok = toks[kind]
    decoder = make_decoder(tok)
    free = decoder.sample(NUM, MAX_TOKENS, [], seed=1)
    assert sum(errors(tok, s.ids) > 0 for s in free) > NUM // 2, "without the mask the garbage model errs"
    min_notes = P.MinNotes(4, SpecialIds(tok).eos, torch.as_tensor(note_counts(tok)))
    samples = decoder.sample(NUM, MAX_TOKENS, [GrammarMask(tok, max_tokens=MAX_TOKENS), min_notes], seed=1)
    for s in samples:
        assert errors(tok, s.ids) == 0, [tok[i] for i in s.ids]
        assert len(notes(tok, s.ids)) >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_constrained_samples_obey_on_decoded_notes(toks, kind):
    tok = toks[kind]
    procs = [GrammarMask(tok, max_tokens=MAX_TOKENS),
             C.PitchRange(tok, 55, 80) & C.AllowedPitchClasses(tok, "E dorian"),
             C.Monophonic(tok), P.RepetitionPenalty(1.3, 16),
             P.MinNotes(2, SpecialIds(tok).eos, torch.as_tensor(note_counts(tok)))]
    samples = make_decoder(tok, seed=2).sample(NUM, MAX_TOKENS, procs, seed=3)
    scale = C.scale_pitch_classes("E dorian")
    total = 0
    for s in samples:
        assert errors(tok, s.ids) == 0
        played = notes(tok, s.ids)
        total += len(played)
        assert all(55 <= n.pitch < 80 and n.pitch % 12 in scale for n in played)
        assert all(b.start >= a.end for a, b in zip(played, played[1:])), "notes overlap"
    assert total >= 2 * NUM


def test_primer_cut_mid_note_is_completed(toks):
    """A primer that stops with a note sounding (MIDILike) or half written (REMI) is finished within budget."""
    for kind, primer in (("MIDILike", ("TimeShift_1.0.24", "NoteOn_60", "NoteOn_64")),
                         ("REMI", ("Bar_None", "TimeSig_4/4", "Position_0", "Pitch_60"))):
        tok = toks[kind]
        gen = torch.Generator().manual_seed(0)
        ids = history(tok, *primer).repeat(16, 1)
        g = GrammarMask(tok, max_tokens=4)
        for _ in range(4):
            scores = g(ids, torch.randn(16, len(tok), generator=gen))
            ids = torch.cat([ids, torch.multinomial(scores.softmax(-1), 1, generator=gen)], 1)
        for row in ids[:, 1:].tolist():
            body = row[: row.index(SpecialIds(tok).eos)] if SpecialIds(tok).eos in row else row
            assert errors(tok, body) == 0, [tok[i] for i in body]
            assert len(notes(tok, body)) >= 1
