"""Processors on hand-made logits; sampling and scoring agree; seeds reproduce."""

import math

import pytest
import torch

from melodylm.decoding import processors as P
from melodylm.decoding.core import Decoder
from melodylm.models.components.rnn_lm import RecurrentLM

LOGITS = torch.tensor([[1.0, 3.0, 2.0, 0.0, -1.0]])
IDS = torch.tensor([[0, 1]])


def kept(logits: torch.Tensor) -> list[int]:
    return torch.isfinite(logits[0]).nonzero().flatten().tolist()


def test_temperature_scales_and_checks():
    out = P.Temperature(2.0)(IDS, LOGITS)
    torch.testing.assert_close(out, LOGITS / 2)
    with pytest.raises(ValueError):
        P.Temperature(0.0)


def test_top_k_keeps_exact_ids():
    assert kept(P.TopK(2)(IDS, LOGITS)) == [1, 2]
    assert kept(P.TopK(10)(IDS, LOGITS)) == [0, 1, 2, 3, 4]


def test_top_p_keeps_smallest_nucleus():
    probs = LOGITS.softmax(-1)[0]  # 0.087 0.644 0.237 0.032 0.012
    assert probs[1] < 0.7 < probs[1] + probs[2]
    assert kept(P.TopP(0.7)(IDS, LOGITS)) == [1, 2]
    assert kept(P.TopP(0.5)(IDS, LOGITS)) == [1]
    assert kept(P.TopP(1.0)(IDS, LOGITS)) == [0, 1, 2, 3, 4]


def test_truncation_spares_the_end_token():
    """id 4 (p 0.012) is the end token: top-k and top-p cut it without ``keep``, never with it."""
    assert kept(P.TopK(2, keep=(4,))(IDS, LOGITS)) == [1, 2, 4]
    assert kept(P.TopP(0.7, keep=(4,))(IDS, LOGITS)) == [1, 2, 4]
    assert kept(P.TopP(0.7, keep=(1,))(IDS, LOGITS)) == [1, 2]  # kept anyway: nothing changes
    shape = P.sampling_shape(top_k=3, top_p=0.5, keep=(4,))
    assert [p.keep for p in shape[1:]] == [(4,), (4,)]


def test_min_notes_blocks_eos_until_enough_notes():
    notes_per_id = torch.tensor([0, 1, 0, 0, 0])  # id 1 is a Pitch token, id 4 is EOS
    proc = P.MinNotes(2, eos_id=4, notes_per_id=notes_per_id)
    assert 4 not in kept(proc(torch.tensor([[0, 1]]), LOGITS))
    assert 4 in kept(proc(torch.tensor([[0, 1, 2, 1]]), LOGITS))


def test_processors_do_not_modify_input():
    before = LOGITS.clone()
    for proc in (P.Temperature(0.5), P.TopK(2, keep=(4,)), P.TopP(0.6, keep=(4,)), P.MinNotes(5, 4, torch.zeros(5, dtype=torch.long))):
        proc(IDS, LOGITS)
    torch.testing.assert_close(LOGITS, before)


@pytest.fixture
def decoder():
    torch.manual_seed(0)
    model = RecurrentLM(12, embedding_dim=8, hidden_size=16, num_layers=2, cell="lstm", dropout=0.0)
    with torch.no_grad():
        model.head.bias[2] += 1.5  # EOS likely enough that pieces end within a few dozen tokens
    return Decoder(model, bos=1, eos=2, pad=0)


def test_score_of_sample_equals_logprob_seen_while_sampling(decoder):
    samples = decoder.sample(16, stop=60, processors=[P.Temperature(0.8), P.TopK(6)], seed=3)
    ended = [s for s in samples if s.ended]
    assert ended, "some samples should reach EOS within 60 tokens"
    scores = decoder.token_logprobs([s.ids for s in ended])
    for s, lp in zip(ended, scores):
        assert math.isclose(float(lp.sum()), s.logprob, abs_tol=1e-4)
        torch.testing.assert_close(lp, torch.tensor(s.token_logprobs), atol=1e-5, rtol=0)
    unfinished = [s for s in samples if not s.ended]
    for s, lp in zip(unfinished, decoder.token_logprobs([s.ids for s in unfinished])):
        assert math.isclose(float(lp[:-1].sum()), s.logprob, abs_tol=1e-4)  # all but the final EOS term


def test_seed_reproduces_and_differs(decoder):
    a = decoder.sample(4, 30, [P.Temperature(1.0)], seed=7)
    b = decoder.sample(4, 30, [P.Temperature(1.0)], seed=7)
    c = decoder.sample(4, 30, [P.Temperature(1.0)], seed=8)
    assert [s.ids for s in a] == [s.ids for s in b]
    assert [s.ids for s in a] != [s.ids for s in c]


def test_greedy_is_argmax_of_the_model(decoder):
    (s,) = decoder.sample(1, 10, [], greedy=True)
    ids = [1]
    for tok in s.ids + ([2] if s.ended else []):
        logits, _ = decoder.model(torch.tensor([ids]))
        assert int(logits[0, -1].argmax()) == tok
        ids.append(tok)


class MarkovLM(torch.nn.Module):
    """A toy 'language model' whose next-token logits depend only on the last token."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table.log()

    def forward(self, ids, state=None):
        return self.table[ids], state

    def step(self, ids, state=None):
        return self.table[ids], state


PAD, BOS, EOS, A, B = range(5)


@pytest.fixture
def markov():
    # From BOS, A is likelier than B; but after A the piece rarely ends, after B it almost always does.
    table = torch.full((5, 5), 1e-9)
    table[BOS, A], table[BOS, B] = 0.6, 0.4
    table[A, EOS], table[A, A], table[A, B] = 0.3, 0.35, 0.35
    table[B, EOS], table[B, A], table[B, B] = 0.9, 0.05, 0.05
    return Decoder(MarkovLM(table / table.sum(-1, keepdim=True)), bos=BOS, eos=EOS, pad=PAD)


def test_beam_search_finds_the_best_sequence_greedy_misses(markov):
    (greedy,) = markov.sample(1, 10, [], greedy=True)
    assert greedy.ids[0] == A  # greedy commits to the likelier first token
    best = markov.beam_search(beam_size=3, stop=10, length_penalty=0.0)
    assert best[0].ids == [B] and best[0].stop_reason == "eos"
    assert math.isclose(best[0].logprob, math.log(0.4 * 0.9), rel_tol=1e-5)
    assert best[0].logprob > greedy.logprob
    assert [s.logprob for s in best] == sorted((s.logprob for s in best), reverse=True)


def test_beam_search_respects_constraints(markov):
    ban_b = lambda ids, logits: logits.index_fill(1, torch.tensor([B]), float("-inf"))  # noqa: E731
    best = markov.beam_search(beam_size=3, stop=10, processors=[ban_b], length_penalty=0.0)
    assert best[0].ids == [A] and B not in sum((s.ids for s in best), [])


def test_primer_conditions_the_continuation(markov):
    # After the primer [B] the toy model ends at once with probability 0.9.
    scores = markov.token_logprobs([[]], primer=[B])
    assert math.isclose(float(scores[0][0]), math.log(0.9), rel_tol=1e-5)
    samples = markov.sample(200, 5, [], seed=0, primer=[B])
    share_empty = sum(s.ids == [] for s in samples) / len(samples)
    assert 0.8 < share_empty < 0.97


def test_stop_reasons_and_budget(markov):
    samples = markov.sample(50, 3, [], seed=1)
    assert {s.stop_reason for s in samples} <= {"eos", "max_tokens"}
    assert all(len(s.ids) <= 3 for s in samples)
    assert all(len(s.ids) == 3 for s in samples if s.stop_reason == "max_tokens")


def test_pad_and_bos_are_never_generated(markov):
    table = torch.full((5, 5), 1.0)  # uniform: PAD and BOS would be drawn often if not masked
    dec = Decoder(MarkovLM(table / 5), bos=BOS, eos=EOS, pad=PAD)
    for s in dec.sample(64, 20, [], seed=0):
        assert PAD not in s.ids and BOS not in s.ids


def test_draw_follows_the_distribution_and_never_picks_banned_ids():
    from melodylm.decoding.core import _draw

    scores = torch.tensor([[0.0, math.log(3.0), float("-inf")]]).expand(20000, -1)
    picks = _draw(scores, torch.Generator().manual_seed(0))
    freq = torch.bincount(picks, minlength=3).float() / len(picks)
    assert freq[2] == 0
    assert abs(float(freq[1]) - 0.75) < 0.015


# --- the device: everything the core builds follows the model -------------------------------------------


def _melody_lm(kind: str = "REMI"):
    from melodylm.api.lm import MusicLM
    from melodylm.data.tokenizer import build_tokenizer

    tok = build_tokenizer(kind)
    torch.manual_seed(0)
    return MusicLM(RecurrentLM(len(tok), embedding_dim=8, hidden_size=16, num_layers=2, dropout=0.0), tok)


def _decode_everything(lm, procs_for) -> list:
    """Sampling (bars limit, a primer), beam search and scoring, each with fresh processors."""
    from melodylm.decoding.core import StopAt

    primer = lm.decoder.sample(1, 6, procs_for(), seed=1)[0].ids
    samples = lm.decoder.sample(3, StopAt(40, bars=2), procs_for(), seed=2, primer=primer)
    beams = lm.decoder.beam_search(2, StopAt(12, seconds=4.0), procs_for(), primer=primer)
    scores = lm.decoder.token_logprobs([s.ids for s in samples], primer=primer)
    return [[s.ids for s in samples], [s.ids for s in beams], [lp.tolist() for lp in scores]]


@pytest.mark.parametrize("kind", ["REMI", "MIDILike"])
def test_decoding_builds_every_tensor_on_the_models_device(kind):
    """With torch's default device set to ``meta``, a tensor the core, a processor or the timeline built without
    following the (CPU) model would land on ``meta``: the first op mixing it with the model's output fails."""
    lm = _melody_lm(kind)

    def procs_for():
        return lm.processors(min_notes=2, pitch_range=(60, 80), key="D major", monophonic=True,
                             repetition_penalty=1.2, temperature=0.9, top_k=20, top_p=0.95, max_tokens=40)

    expected = _decode_everything(lm, procs_for)
    made = [procs_for() for _ in range(3)]  # built from the vocabulary beforehand, on the CPU
    with torch.device("meta"):
        assert torch.empty(1).device.type == "meta"
        got = _decode_everything(lm, lambda: made.pop())
    assert got == expected and any(got[0])


def test_scoring_runs_on_the_models_device_and_follows_a_move():
    decoder = _melody_lm().decoder
    assert decoder.device.type == "cpu"
    decoder.model.to("meta")  # no values: shapes and devices only
    assert decoder.device.type == "meta"
    (lp,) = decoder.token_logprobs([[5, 6, 7]], primer=[8])
    assert lp.device.type == "meta" and lp.shape == (4,)


def test_processors_move_their_tables_to_the_logits_device():
    from melodylm.decoding import constraints as C
    from melodylm.decoding.grammar import GrammarMask

    lm = _melody_lm()
    tok, vocab = lm.tokenizer, len(lm.tokenizer)
    for proc in (GrammarMask(tok), C.PitchRange(tok, 60, 72), C.Monophonic(tok)):
        ids = torch.tensor([[1, tok.vocab["Bar_None"]]])
        on_cpu = proc(ids, torch.zeros(1, vocab))
        out = proc(ids.to("meta"), torch.zeros(1, vocab, device="meta"))
        assert out.device.type == "meta" and out.shape == on_cpu.shape
        assert all(t.device.type == "meta" for t in vars(proc).values() if isinstance(t, torch.Tensor))


def test_min_bars_bans_the_end_token_until_that_bar_per_row():
    from melodylm.decoding.core import StopAt

    lm = _melody_lm()
    bar, eos = lm.tokenizer.vocab["Bar_None"], lm.special.eos
    with torch.no_grad():
        lm.model.head.bias[eos] += 4.0  # the untrained model would end almost at once
        lm.model.head.bias[bar] += 5.0
    free = lm.decoder.sample(6, StopAt(300), [], seed=0)
    assert any(s.ended and s.ids.count(bar) < 3 for s in free)  # what min_bars must prevent
    want = [1, 3, 5, 3, 1, 5]
    spans = lm.decoder.sample(6, StopAt(300, bars=want, min_bars=want), [], seed=0)
    for s, n in zip(spans, want):
        assert s.stop_reason in ("eos", "bars") and s.ids.count(bar) == n
    (best,) = lm.decoder.beam_search(1, StopAt(300, bars=4, min_bars=4), [])
    assert best.ids.count(bar) == 4
    with pytest.raises(ValueError, match="min_bars"):
        lm.decoder.sample(2, StopAt(30, min_bars=[0, 2]), [])


# --- dynamic evaluation ------------------------------------------------------


def _clock_decoder():
    torch.manual_seed(3)
    model = RecurrentLM(12, embedding_dim=8, hidden_size=16, num_layers=1, cell="lstm", dropout=0.0, bar_clock=4)
    model.set_bar_tokens([5])
    return Decoder(model, bos=1, eos=2, pad=0)


@pytest.mark.parametrize("make", ["plain", "clock"])
def test_adapted_scoring_predicts_before_it_learns_and_restores_the_weights(decoder, make):
    dec = decoder if make == "plain" else _clock_decoder()
    seq = [3, 4, 5, 6, 7, 5, 8, 9, 10, 11, 5, 3]  # 12 tokens + EOS: chunks of 5, 5, 3
    before = {k: v.clone() for k, v in dec.model.state_dict().items()}
    static = dec.token_logprobs([seq])[0]
    torch.testing.assert_close(dec.adapted_logprobs(seq, lr=0.0, chunk=5), static)
    adapted = dec.adapted_logprobs(seq, lr=0.5, chunk=5)
    for k, v in dec.model.state_dict().items():
        assert torch.equal(v, before[k]), k  # every piece starts from the trained weights
    torch.testing.assert_close(adapted[:5], static[:5])  # the first chunk is scored before any step
    # The second chunk by hand: one SGD step on the first chunk's mean NLL, the state carried from before it.
    ids = torch.tensor([[1, *seq, 2]])
    manual = RecurrentLM(**dec.model.config)
    manual.load_state_dict(dec.model.state_dict())
    manual.eval()
    logits, state = manual(ids[:, :5])
    loss = -logits.log_softmax(-1).gather(-1, ids[:, 1:6, None]).mean()
    grads = torch.autograd.grad(loss, list(manual.parameters()))
    with torch.no_grad():
        for p, g in zip(manual.parameters(), grads):
            p -= 0.5 * g
        logits, _ = manual(ids[:, 5:10], tuple(s.detach() for s in state))
    expected = logits.log_softmax(-1).gather(-1, ids[:, 6:11, None])[0, :, 0]
    torch.testing.assert_close(adapted[5:10], expected)
    with pytest.raises(ValueError):
        dec.adapted_logprobs(seq, lr=-1.0)


def test_adapting_learns_a_piece_that_repeats_itself(decoder):
    """A motif of 8 random tokens, eight times: the static model pays for every repeat alike; learning the piece
    as it goes makes the later repeats cheaper (the gain IDyOM's short-term model is for)."""
    motif = torch.randint(3, 12, (8,), generator=torch.Generator().manual_seed(5)).tolist()
    seq = motif * 8
    static = decoder.token_logprobs([seq])[0][:-1].view(8, 8).sum(1)
    adapted = decoder.adapted_logprobs(seq, lr=0.5, chunk=8)[:-1].view(8, 8).sum(1)
    torch.testing.assert_close(adapted[0], static[0])
    assert (adapted[4:] > static[4:] + 1.0).all()  # > 1 nat gained on every later repeat
