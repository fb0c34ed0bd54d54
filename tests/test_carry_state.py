"""``data.carry_state`` for ``melodylm fit``: training walks whole prepared pieces with the LSTM state carried."""

import json

import melodylm

import pytest
import torch

from melodylm.data.datamodules import TokenDataModule
from melodylm.decoding.core import Decoder
from melodylm.models.lm_module import LanguageModelModule
from tests.conftest import REPO, run_cli


def _long_memory_lm(vocab_size: int, bar_ids: list[int] = (), bar_clock: int = 0) -> LanguageModelModule:
    torch.manual_seed(0)
    module = LanguageModelModule(vocab_size=vocab_size, embedding_dim=8, hidden_size=16, num_layers=2, dropout=0.0,
                                 bar_clock=bar_clock)
    module.model.set_bar_tokens(list(bar_ids))
    with torch.no_grad():
        for w in module.model.rnn.parameters():
            w.mul_(4)  # a long memory: the state carried into a window matters
    return module.eval()


@pytest.mark.parametrize("bar_clock", [0, 6])
def test_carried_windows_score_every_prepared_piece_whole(prepared, bar_clock):
    """One epoch of one carried row: its summed loss is the decoding core's NLL of every training piece, whole
    (with the bar clock too: the count of bars carried from window to window is the whole piece's)."""
    dm = TokenDataModule(str(prepared), seq_len=32, batch_size=1, carry_state=True)
    dm.setup("fit")
    bars = [i for t, i in dm.tokenizer.vocab.items() if t.startswith("Bar_")]
    module = _long_memory_lm(dm.vocab_size, bars, bar_clock)
    with torch.no_grad():
        steps = [module.model_step(batch) for batch in dm.train_dataloader()]
        carried = sum(float(loss) * count for loss, count in steps)
        module._carry = None
        plain = TokenDataModule(str(prepared), seq_len=32, batch_size=1)
        plain.setup("fit")
        alone = sum(float(loss) * count for loss, count in map(module.model_step, plain.train_dataloader()))
    pieces = dm.splits["train"]
    decoder = Decoder(module.model, dm.special.bos, dm.special.eos, dm.special.pad)
    whole = -sum(float(decoder.token_logprobs([pieces[i].tolist()])[0].sum()) for i in range(len(pieces)))
    tokens = int(pieces.lengths().sum()) + len(pieces)
    assert sum(count for _, count in steps) == tokens  # every target once: the pieces' tokens and their EOS
    assert carried == pytest.approx(whole, rel=1e-5)
    assert abs(alone - whole) > 1  # the same windows, each from the zero state, score otherwise


@pytest.mark.slow
@pytest.mark.parametrize("bar_clock", [0, 16])
def test_fit_with_a_carried_state(tmp_path, prepared, bar_clock):
    run_cli("fit", "--config", str(REPO / "configs" / "debug.yaml"), "--data.init_args.data_dir", str(prepared),
            "--data.init_args.carry_state", "true", "--model.init_args.bar_clock", str(bar_clock), cwd=tmp_path)
    config = (tmp_path / "checkpoints" / "debug" / "config.yaml").read_text()
    assert "carry_state: true" in config and f"bar_clock: {bar_clock}" in config
    if bar_clock:  # the checkpoint knows its bar tokens and samples with the clock
        lm = melodylm.load(tmp_path / "checkpoints" / "debug")
        assert lm.model.bar_clock == 16 and lm.model.is_bar.sum() > 0
        run_cli("sample", "--ckpt", str(tmp_path / "checkpoints" / "debug"), "--num", "2", "--max-tokens", "64",
                "--no-wav", "--out", str(tmp_path / "samples"), cwd=tmp_path)
        assert len(list((tmp_path / "samples").glob("*.mid"))) == 2
    out = run_cli("score", "--ckpt", str(tmp_path / "checkpoints" / "debug"), "--json",
                  str(next(iter(json.loads(line)["path"] for line in (prepared / "manifest.jsonl").read_text()
                                .splitlines()))))
    assert json.loads(out.stdout.splitlines()[-1])["nll_token"] > 0


def test_a_bar_clock_without_the_carried_state_is_a_one_line_error(tmp_path, prepared):
    out = run_cli("fit", "--config", str(REPO / "configs" / "debug.yaml"), "--data.init_args.data_dir",
                  str(prepared), "--model.init_args.bar_clock", "16", cwd=tmp_path, check=False)
    assert out.returncode != 0 and "bar_clock needs data.init_args.carry_state true" in out.stderr
    assert "Traceback" not in out.stderr
