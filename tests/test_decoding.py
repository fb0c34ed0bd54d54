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


def test_min_notes_blocks_eos_until_enough_notes():
    notes_per_id = torch.tensor([0, 1, 0, 0, 0])  # id 1 is a Pitch token, id 4 is EOS
    proc = P.MinNotes(2, eos_id=4, notes_per_id=notes_per_id)
    assert 4 not in kept(proc(torch.tensor([[0, 1]]), LOGITS))
    assert 4 in kept(proc(torch.tensor([[0, 1, 2, 1]]), LOGITS))


def test_processors_do_not_modify_input():
    before = LOGITS.clone()
    for proc in (P.Temperature(0.5), P.TopK(2), P.TopP(0.6), P.MinNotes(5, 4, torch.zeros(5, dtype=torch.long))):
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
    samples = decoder.sample(16, max_tokens=60, processors=[P.Temperature(0.8), P.TopK(6)], seed=3)
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
