"""RecurrentLM.step's fast path: same logits and states as forward, fresh weights, train-mode fallback."""

import copy
import pickle

import pytest
import torch

from melodylm.models.components import fast_step, rnn_lm
from melodylm.models.components.rnn_lm import RecurrentLM

VOCAB, TIME = 40, 9


def make(cell: str, layers: int = 2, tie: str = "untied", seed: int = 0, dropout: float = 0.3) -> RecurrentLM:
    """``tie``: "untied", "tied" (hidden == embedding) or "projected" (tied, hidden != embedding)."""
    torch.manual_seed(seed)
    hidden = 12 if tie == "tied" else 16
    return RecurrentLM(VOCAB, embedding_dim=12, hidden_size=hidden, num_layers=layers, cell=cell,
                       dropout=dropout, tie_weights=tie != "untied").eval()


def stepped(model: RecurrentLM, ids: torch.Tensor, state=None):
    """Logits ``(batch, time, vocab)`` and final state from ``step`` called once per column of ``ids``."""
    out = []
    for t in range(ids.size(1)):
        logits, state = model.step(ids[:, t], state)
        out.append(logits)
    return torch.stack(out, dim=1), state


def assert_states_close(a, b):
    for x, y in zip(a, b) if isinstance(a, tuple) else [(a, b)]:
        assert x.shape == y.shape
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


@pytest.fixture(params=[True, False], ids=["onednn", "addmm"])
def backend(request, monkeypatch):
    """Run a test with oneDNN for batch > 1 (when this torch has it) and with torch.addmm only."""
    if request.param and not fast_step._ONEDNN:
        pytest.skip("this torch build has no oneDNN")
    monkeypatch.setattr(fast_step, "_ONEDNN", request.param)
    return request.param


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("tie", ["untied", "tied", "projected"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_step_equals_forward(cell, layers, tie, batch, backend):
    model = make(cell, layers, tie)
    ids = torch.randint(0, VOCAB, (batch, TIME))
    with torch.inference_mode():
        full, full_state = model(ids)
        logits, state = stepped(model, ids)
    assert model._fast is not None  # the fast path ran, on oneDNN from batch 2 when it is there
    assert (model._fast.head.packed is not None) == (backend and batch >= fast_step.ONEDNN_MIN_BATCH)
    assert logits.shape == (batch, TIME, VOCAB)
    torch.testing.assert_close(logits, full, rtol=1e-5, atol=1e-5)
    assert_states_close(state, full_state)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_states_are_interchangeable_with_forward(cell, backend):
    model = make(cell, layers=2)
    ids = torch.randint(0, VOCAB, (3, TIME))
    with torch.no_grad():
        full, full_end = model(ids)
        zeros = model.initial_state(3)
        start = tuple(torch.randn_like(s) for s in zeros) if cell == "lstm" else torch.randn_like(zeros)
        # a non-zero carried state, primed by forward, continued by step
        from_start, from_start_end = model(ids, start)
        _, mid = model(ids[:, :4], start)
        tail, end = stepped(model, ids[:, 4:], mid)
        torch.testing.assert_close(tail, from_start[:, 4:], rtol=1e-5, atol=1e-5)
        assert_states_close(end, from_start_end)
        # primed by step, continued by forward
        head, mid = stepped(model, ids[:, :5])
        rest, end = model(ids[:, 5:], mid)
        torch.testing.assert_close(torch.cat([head, rest], 1), full, rtol=1e-5, atol=1e-5)
        assert_states_close(end, full_end)


def test_loading_other_weights_is_picked_up():
    model, other = make("lstm", seed=0), make("lstm", seed=1)
    ids = torch.randint(0, VOCAB, (2, TIME))
    with torch.inference_mode():
        stepped(model, ids)  # builds the cache for the first weights
        model.load_state_dict(other.state_dict())
        logits, _ = stepped(model, ids)
        expected, _ = other(ids)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_optimizer_steps_are_picked_up(cell):
    model = make(cell, tie="projected")
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    ids = torch.randint(0, VOCAB, (2, TIME))
    for _ in range(2):
        with torch.no_grad():
            before, _ = stepped(model, ids)
        loss = model(ids)[0].logsumexp(-1).mean()  # eval mode, grad on: no train()/eval() in between
        loss.backward()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            after, _ = stepped(model, ids)
            expected, _ = model(ids)
        assert not torch.allclose(before, after)
        torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)


def test_in_place_edits_dtype_and_device_moves_are_picked_up():
    model = make("lstm")
    ids = torch.randint(0, VOCAB, (2, TIME))
    with torch.no_grad():
        stepped(model, ids)
        model.head.bias.add_(1.0)
        model.rnn.weight_hh_l1.mul_(0.5)
        torch.testing.assert_close(stepped(model, ids)[0], model(ids)[0], rtol=1e-5, atol=1e-5)
        model.double()  # new storage and dtype: rebuilt, on torch.addmm (oneDNN is used for float32 only)
        logits, state = stepped(model, ids)
        assert model._fast.head.packed is None
        assert logits.dtype == torch.float64 and state[0].dtype == torch.float64
        torch.testing.assert_close(logits, model(ids)[0])


def test_writes_through_data_need_eval_to_be_seen():
    """``param.data`` bypasses the version counter: documented, and model.eval() refreshes."""
    model = make("gru")
    ids = torch.randint(0, VOCAB, (2, TIME))
    with torch.no_grad():
        stale, _ = stepped(model, ids)
        model.rnn.weight_hh_l0.data.mul_(0.5)  # the cache holds a rearranged copy of this matrix
        torch.testing.assert_close(stepped(model, ids)[0], stale)  # not seen
        model.eval()
        torch.testing.assert_close(stepped(model, ids)[0], model(ids)[0], rtol=1e-5, atol=1e-5)


def test_train_mode_steps_through_forward_with_dropout():
    model = make("lstm", dropout=0.5).train()
    ids = torch.randint(0, VOCAB, (3,))
    torch.manual_seed(7)
    logits, state = model.step(ids)
    torch.manual_seed(7)
    expected, expected_state = model(ids.unsqueeze(1))
    torch.testing.assert_close(logits, expected[:, 0])
    assert_states_close(state, expected_state)
    assert model._fast is None  # no cache built in train mode
    logits.sum().backward()  # gradients flow as in training
    assert model.rnn.weight_hh_l0.grad is not None
    torch.manual_seed(8)
    assert not torch.allclose(model.step(ids)[0], logits)  # dropout is live


def test_eval_mode_with_autograd_on_keeps_gradients():
    model = make("gru")
    ids = torch.randint(0, VOCAB, (2,))
    logits, _ = model.step(ids)
    assert logits.requires_grad
    logits.sum().backward()
    assert model.embedding.weight.grad is not None
    with torch.no_grad():
        fast, _ = model.step(ids)
    torch.testing.assert_close(fast, logits.detach(), rtol=1e-5, atol=1e-5)


def test_model_with_step_cache_copies_and_pickles():
    model = make("lstm")
    ids = torch.randint(0, VOCAB, (2, TIME))
    with torch.no_grad():
        expected, _ = stepped(model, ids)
        for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert clone._fast is None
            torch.testing.assert_close(stepped(clone, ids)[0], expected)


def test_cache_built_under_inference_mode_serves_no_grad_and_back():
    model = make("lstm", layers=2)
    ids = torch.randint(0, VOCAB, (4, TIME))
    with torch.no_grad():
        expected, _ = model(ids)
    with torch.inference_mode():
        head, state = stepped(model, ids[:, :3])  # cache (and oneDNN packing) made of inference tensors
    with torch.no_grad():
        tail, state = stepped(model, ids[:, 3:], state)
    torch.testing.assert_close(torch.cat([head, tail], 1), expected, rtol=1e-5, atol=1e-5)
    state[0][:, 0] = 0.0  # the returned state is an ordinary tensor outside inference_mode too


def test_model_built_under_inference_mode_steps():
    """Inference tensors have no version counter: the cache is keyed on storage alone."""
    with torch.inference_mode():
        model = make("rnn")
        ids = torch.randint(0, VOCAB, (2, TIME))
        torch.testing.assert_close(stepped(model, ids)[0], model(ids)[0], rtol=1e-5, atol=1e-5)


def test_big_vocabulary_keeps_the_input_matrix(monkeypatch):
    """Above FOLD_EMBEDDING_MAX_ENTRIES the first layer multiplies the embedding instead of a table row."""
    monkeypatch.setattr(fast_step, "FOLD_EMBEDDING_MAX_ENTRIES", 10)
    model = make("gru", layers=2)
    ids = torch.randint(0, VOCAB, (3, TIME))
    with torch.no_grad():
        logits, _ = stepped(model, ids)
        assert model._fast.table is None
        torch.testing.assert_close(logits, model(ids)[0], rtol=1e-5, atol=1e-5)
