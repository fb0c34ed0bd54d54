"""The plain torch LM: shapes, carried state, cell types, weight tying."""

import math

import pytest
import torch

from melodylm.models.components.rnn_lm import RecurrentLM


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_stepping_with_carried_state_equals_one_pass(cell):
    torch.manual_seed(0)
    model = RecurrentLM(50, embedding_dim=8, hidden_size=16, num_layers=2, cell=cell, dropout=0.3).eval()
    ids = torch.randint(0, 50, (3, 12))
    full, _ = model(ids)
    assert full.shape == (3, 12, 50)
    state, steps = None, []
    for t in range(12):
        logits, state = model(ids[:, t : t + 1], state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


def test_initial_state_matches_default():
    model = RecurrentLM(20, 8, 16, 2, "lstm", 0.0).eval()
    ids = torch.randint(0, 20, (2, 5))
    a, _ = model(ids)
    b, _ = model(ids, model.initial_state(2))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("hidden", [8, 16])
def test_tied_weights_share_the_embedding(hidden):
    model = RecurrentLM(30, embedding_dim=8, hidden_size=hidden, num_layers=1, tie_weights=True)
    assert model.head.weight.data_ptr() == model.embedding.weight.data_ptr()
    logits, _ = model(torch.zeros(1, 4, dtype=torch.long))
    assert logits.shape == (1, 4, 30)


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="cell must be one of"):
        RecurrentLM(10, cell="transformer")


def test_a_wall_clock_horizon_anneals_the_learning_rate(monkeypatch):
    import lightning as L

    from melodylm.models import base, lm_module

    def schedule(time_horizon=None, **trainer_args):
        module = lm_module.LanguageModelModule(vocab_size=8, embedding_dim=4, hidden_size=8, num_layers=1,
                                               warmup_steps=0, min_lr_ratio=0.1, lr=1.0, time_horizon=time_horizon)
        module._trainer = L.Trainer(max_steps=1000, logger=False, enable_checkpointing=False,
                                    enable_progress_bar=False, enable_model_summary=False, **trainer_args)
        return module

    steps_only = schedule()  # no horizon, no time cap: the steps alone
    assert steps_only.trainer.estimated_stepping_batches == 1000 and steps_only.schedule_seconds() is None
    factor = steps_only.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert factor(500) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine
    assert schedule(max_time={"seconds": 200}).schedule_seconds() is None  # a time cap without a horizon
    assert schedule(time_horizon=0.5).schedule_seconds() is None  # a horizon without a time cap

    module = schedule(time_horizon=0.5, max_time={"seconds": 200})
    assert module.schedule_seconds() == pytest.approx(100.0)  # half of the 200 s the Timer has left
    now = [0.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: now[0])
    factor = module.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]  # the clock starts at 0 s
    assert factor(500) == pytest.approx(0.1 + 0.9 * 0.5)  # no time used: the steps decide
    now[0] = 50.0
    assert factor(10) == pytest.approx(0.1 + 0.9 * 0.5)  # half the time used after 10 of 1000 steps
    assert factor(900) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(0.9 * math.pi)))
    now[0] = 150.0
    assert factor(10) == pytest.approx(0.1)  # past the horizon: the floor


def _clocked() -> RecurrentLM:
    torch.manual_seed(0)
    model = RecurrentLM(40, embedding_dim=8, hidden_size=16, num_layers=2, cell="lstm", dropout=0.0, bar_clock=3)
    model.set_bar_tokens([1, 2])  # ids 1 and 2 open a bar
    return model.eval()


def test_bar_clock_counts_the_bars_begun_and_caps_them():
    model = _clocked()
    ids = torch.tensor([[0, 1, 5, 6, 2, 7, 1, 1, 1, 8]])
    counts, bars = model.bar_counts(ids, None)
    assert counts.tolist() == [[0, 1, 1, 1, 2, 2, 3, 3, 3, 3]]  # capped at bar_clock 3
    assert bars.shape == (1, 1, 1) and bars.item() == 5  # the carried count is not capped
    counts, _ = model.bar_counts(torch.tensor([[5, 1]]), torch.full((1, 1, 1), 1.0))
    assert counts.tolist() == [[1, 2]]


@pytest.mark.parametrize("fold", [True, False])
def test_bar_clock_gives_the_same_logits_in_one_pass_in_windows_and_step_by_step(fold, monkeypatch):
    import melodylm.models.components.fast_step as fast_step

    if not fold:  # the first layer's input matrix instead of the folded table
        monkeypatch.setattr(fast_step, "FOLD_EMBEDDING_MAX_ENTRIES", 0)
    model = _clocked()
    torch.manual_seed(1)
    ids = torch.randint(0, 40, (3, 20))
    ids[:, ::4] = 1  # a bar every four tokens: the count passes the cap
    full, end = model(ids)
    state, windows = None, []
    for t in range(0, 20, 7):  # carried windows, as training walks a piece
        logits, state = model(ids[:, t : t + 7], state)
        windows.append(logits)
    torch.testing.assert_close(torch.cat(windows, dim=1), full, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():  # the decoding fast path
        state, steps = model.initial_state(3), []
        for t in range(20):
            logits, state = model.step(ids[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, rtol=1e-4, atol=1e-4)
    expected = ((ids == 1) | (ids == 2)).sum(1).float()  # every bar token of the row, uncapped
    assert torch.equal(state[2].flatten(), expected) and torch.equal(end[2].flatten(), expected)


def test_bar_clock_changes_what_the_model_predicts():
    model = _clocked()
    ids = torch.tensor([[0, 1, 5, 1, 5]])
    without_bars = torch.tensor([[0, 3, 5, 3, 5]])  # the same shape, no bar tokens
    assert not torch.allclose(model(ids)[0][0, -1], model(without_bars)[0][0, -1])
    with pytest.raises(ValueError, match="needs cell lstm"):
        RecurrentLM(10, cell="gru", bar_clock=4)
