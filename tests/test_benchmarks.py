"""``melodylm bench pianoroll`` and ``melodylm bench melody``: conversions, metrics, recipes, end to end."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy.io import savemat
from torch.utils.data import default_collate

from melodylm import pianoroll as PR
from melodylm.batches import PieceStreams, WindowDataset
from melodylm.benchmarks import pianoroll as bench
from melodylm.benchmarks.melody import NGram
from melodylm.benchmarks.recipe import load_recipe
from melodylm.decoding.core import Decoder
from melodylm.errors import UserError
from melodylm.models.lm_module import LanguageModelModule
from tests.conftest import REPO, SHARED_DATA, run_cli

TINY_RECIPE = """\
model: {embedding_dim: 16, hidden_size: 32, num_layers: 1, dropout: 0.0, warmup_steps: 2}
data: {seq_len: 64, batch_size: 8, eval_batch_size: 8, transpose: [-3, 3]}
train: {max_epochs: 1}
"""


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


def test_windows_are_transposed_within_the_keyboard():
    roll = np.zeros((4, 88), dtype=bool)
    roll[:, [0, 5]] = True  # the lowest key: no downward shift is possible
    pieces = bench.RollPieces([roll])
    windows = bench.TransposedWindows(pieces, seq_len=16, shifts=(-6, 5))
    plain = WindowDataset.window(windows, 0)[0]
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        x, y = windows[0]
        keys = x[x >= PR.FIRST_KEY] - PR.FIRST_KEY
        assert keys.min() >= 0 and keys.max() < 88
        seen.add(int(keys.min()))
        np.testing.assert_array_equal((x < PR.FIRST_KEY).numpy(), (plain < PR.FIRST_KEY).numpy())
        assert (y[y >= 0] >= PR.FIRST_KEY).sum() == 8  # two keys per frame, four frames
    assert seen == set(range(0, 6))  # shifts 0..+5 only


def transposed_windows(roll, encoding: str, shifts: tuple[int, int], draws: int):
    """``(shift, window ids, window as a roll, the plain window's roll moved by shift)`` per random draw."""
    enc = PR.ENCODINGS[encoding]
    windows = bench.TransposedWindows(bench.RollPieces([roll], enc), seq_len=16, shifts=shifts)
    plain = WindowDataset.window(windows, 0)[0]
    torch.manual_seed(0)
    for _ in range(draws):
        x, _ = windows[0]
        shift = int(x[1] - plain[1])  # x[0] is BOS, x[1] the first key pressed
        yield shift, x, enc.decode(x[x > PR.BOS].tolist()), np.roll(enc.decode(plain[plain > PR.BOS].tolist()), shift, 1)


def test_transposing_change_tokens_keeps_ons_and_offs_apart():
    roll = np.zeros((4, 88), dtype=bool)
    roll[0:2, 40] = True
    roll[2:4, 87] = True  # the highest key: no upward shift is possible
    for shift, _, moved, expected in transposed_windows(roll, "changes", (-3, 3), 20):
        assert -3 <= shift <= 0
        np.testing.assert_array_equal(moved, expected)


def test_transposing_hold_tokens_moves_keys_only():
    roll = np.zeros((4, 88), dtype=bool)
    roll[0:3, [40, 44]] = True  # a chord, held twice (two HOLD tokens), then silence
    assert (bench.RollPieces([roll], PR.ENCODINGS["hold"])[0] == PR.HOLD).sum() == 2
    shifts = set()
    for shift, x, moved, expected in transposed_windows(roll, "hold", (-3, 3), 30):
        shifts.add(shift)
        assert (x == PR.HOLD).sum() == 2
        np.testing.assert_array_equal(moved, expected)
    assert shifts == set(range(-3, 4))


@pytest.fixture
def random_pieces():
    rng = np.random.default_rng(0)
    return bench.RollPieces([rng.random((int(rng.integers(5, 40)), 88)) < 0.05 for _ in range(7)])


def test_piece_streams_walk_whole_pieces_row_by_row(random_pieces):
    windows = bench.TransposedWindows(random_pieces, seq_len=16, shifts=(0, 0), carry=True)
    streams = PieceStreams(windows, batch_size=3)
    rows = [[] for _ in range(3)]
    for _ in range(3):  # epochs: the rows carry on across them
        batches = list(streams)
        assert len(batches) == len(streams) == -(-len(windows) // 3)
        for batch in batches:
            for row, i in zip(rows, batch):
                row.append(windows.index[i])
    for row in rows:  # each row: whole pieces, each window after the one before
        for (p, start), (q, nxt) in zip(row, row[1:]):
            assert (q == p and nxt == start + 16) or (nxt == 0 and start + 16 >= len(random_pieces[p]) + 1)
    assert sum(windows.visits.values()) >= 3 * len(random_pieces) - 3  # about three rounds of every piece


def test_carried_windows_score_every_piece_whole(random_pieces):
    """The windows' summed loss, the state carried, is the pieces' whole NLL as the decoding core scores them."""
    windows = bench.TransposedWindows(random_pieces, seq_len=16, shifts=(0, 0), carry=True)
    torch.manual_seed(0)
    module = LanguageModelModule(vocab_size=PR.VOCAB_SIZE, embedding_dim=8, hidden_size=16, num_layers=2, dropout=0.0)
    with torch.no_grad():
        for w in module.model.rnn.parameters():
            w.mul_(4)  # a long memory: the state matters
    module.eval()
    one_row = PieceStreams(windows, batch_size=1)  # one epoch = every piece once
    with torch.no_grad():
        steps = [module.model_step(default_collate([windows[i] for i in batch])) for batch in one_row]
        carried = sum(float(loss) * count for loss, count in steps)
        module._carry = None
        alone = sum(float(loss) * count for loss, count in
                    (module.model_step(default_collate([windows[i][:2] for i in batch])) for batch in one_row))
    decoder = Decoder(module.model, bos=PR.BOS, eos=PR.EOS, pad=PR.PAD)
    whole = -sum(float(lp.sum()) for lp in decoder.token_logprobs([p.tolist() for p in random_pieces.ids]))
    assert carried == pytest.approx(whole, abs=1e-2)
    assert abs(alone - whole) > 1  # each window from the zero state scores differently


def test_carried_windows_keep_one_key_per_visit(random_pieces):
    windows = bench.TransposedWindows(random_pieces, seq_len=16, shifts=(-5, 5), carry=True)
    seen = set()
    for visit in range(4):
        windows.visits = dict.fromkeys(range(len(random_pieces)), visit)
        for p in range(len(random_pieces)):
            deltas = set()
            for i in (i for i, (q, _) in enumerate(windows.index) if q == p):
                plain, x = WindowDataset.window(windows, i)[0], windows.window(i)[0]
                keys = plain >= PR.FIRST_KEY
                deltas |= set((x[keys] - plain[keys]).tolist())
            assert len(deltas) == 1  # every window of the piece moved by the same shift
            seen |= deltas
    assert len(seen) > 3  # and the shift changes with the piece and the visit


def test_a_lossy_conversion_stops_the_run():
    roll = np.zeros((3, 88), dtype=bool)
    roll[1, 40] = True
    bench.check_round_trip({"train": [roll]}, "x.mat")
    lossy = dataclasses.replace(PR.ENCODINGS["keys"], decode=lambda ids: np.zeros((3, 88), dtype=bool))
    with pytest.raises(UserError, match=r"train\[0\] \(tokens\)"):
        bench.check_round_trip({"train": [roll]}, "x.mat", lossy)


def test_recipes_load_and_unknown_keys_are_refused(tmp_path):
    jsb, nottingham = (load_recipe(REPO / "configs" / f"pianoroll-{name}.yaml") for name in ("jsb", "nottingham"))
    assert jsb.data.transpose[0] < 0 < jsb.data.transpose[1]  # 229 chorales: every key helps
    assert nottingham.data.transpose == (0, 0)  # 694 tunes and an hour: the data's own key (chosen on validation)
    assert nottingham.data.carry_state and nottingham.data.encoding == "hold"
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {hidden: 3}\n")
    with pytest.raises(UserError, match="unknown model argument.*hidden"):
        load_recipe(bad)
    bad.write_text("data: {encoding: deltas}\n")
    with pytest.raises(UserError, match="data.encoding must be one of keys, changes, hold"):
        load_recipe(bad)
    bad.write_text("data: {seq: 3}\n")
    with pytest.raises(UserError, match="unknown key.*seq"):
        load_recipe(bad)


@pytest.mark.parametrize("encoding, carry", [("keys", False), ("changes", False), ("hold", False), ("keys", True)])
def test_bench_pianoroll_end_to_end_on_any_file(tmp_path, tiny_mat, encoding, carry):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.replace("transpose: [-3, 3]", f"transpose: [-3, 3], encoding: {encoding}, "
                                                                f"carry_state: {str(carry).lower()}"))
    out = tmp_path / "run"
    run_cli("bench", "pianoroll", "--data", str(tiny_mat), "--out", str(out), "--config", str(recipe))
    results = json.loads((out / "results.json").read_text())
    for key in ("test_nll_frame", "test_nll_token", "valid_nll_frame", "frames", "pieces", "minutes", "config"):
        assert key in results
    splits = PR.load_mat(tiny_mat)
    assert results["pieces"] == 5 and results["frames"] == sum(len(r) for r in splits["test"])
    assert results["config"]["model"]["hidden_size"] == 32 and results["config"]["data"]["carry_state"] == carry
    enc = PR.encoding(encoding)
    assert results["vocabulary"]["encoding"] == encoding and results["vocabulary"]["size"] == enc.vocab_size
    # Lightning's validation metric and the decoding core's whole-piece scoring agree.
    assert math.isclose(results["best_epoch_val_nll_frame"], results["valid_nll_frame"], rel_tol=1e-4)
    # Recompute the test NLL per frame from the checkpoint, token by token.
    module = bench.FrameLanguageModel(vocab_size=enc.vocab_size, embedding_dim=16, hidden_size=32, num_layers=1)
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
    assert len(list((out / "samples").glob("*.mid"))) == 4 and len(list((out / "samples").glob("*.png"))) == 4


def test_bench_pianoroll_logs_to_wandb_offline_by_default(tmp_path, tiny_mat, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    run_cli("bench", "pianoroll", "--data", str(tiny_mat), "--out", str(tmp_path / "run"), "--config", str(recipe),
            wandb_mode=None)  # no WANDB_MODE and no API key: must not ask to log in
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_bench_pianoroll_bad_input_is_one_line(tmp_path):
    bad = write_mat(tmp_path / "bad.mat", {"traindata": [np.full((3, 88), 2)], "validdata": [np.zeros((3, 88))],
                                           "testdata": [np.zeros((3, 88))]})
    proc = run_cli("bench", "pianoroll", "--data", str(bad), "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "not a binary" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("bench", "pianoroll", "--data", str(tmp_path / "none.mat"), "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    empty = write_mat(tmp_path / "empty.mat", {"traindata": [np.zeros((0, 88))], "validdata": [np.zeros((3, 88))],
                                               "testdata": [np.zeros((3, 88))]})
    proc = run_cli("bench", "pianoroll", "--data", str(empty), "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "traindata[0] has no frames" in proc.stderr


ROLLS = SHARED_DATA / "pianoroll" / "JSB_Chorales.mat"


@pytest.mark.skipif(not ROLLS.is_file(), reason=f"{ROLLS} is absent (set MELODYLM_SHARED_DATA)")
def test_bench_pianoroll_on_a_few_chorales(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    run_cli("bench", "pianoroll", "--data", str(ROLLS), "--out", str(tmp_path / "jsb"), "--config", str(recipe),
            "--max-pieces", "6")
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
    out = tmp_path / "melody.json"
    run_cli("bench", "melody", "--ckpt", str(trained), "--data", str(prepared), "--out", str(out))
    results = json.loads(out.read_text())
    rows = {r["model"].split(" (")[0]: r for r in results["rows"]}
    assert results["notes"] > 0 and results["tokens"] > results["notes"]
    assert rows["bigram"]["nll_note"] < rows["unigram"]["nll_note"]
    for r in rows.values():
        assert math.isclose(r["bits_note"], r["nll_note"] / math.log(2))
        assert math.isclose(r["nll_note"] * results["notes"], r["nll_token"] * results["tokens"])
