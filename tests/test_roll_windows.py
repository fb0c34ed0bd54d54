"""Piano-roll windows for training: transposition per encoding, and carried streams that walk whole pieces."""

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from melodylm.data import pianoroll as PR
from melodylm.data.windows import PieceStreams, RollPieces, TransposedWindows, WindowDataset
from melodylm.decoding.core import Decoder
from melodylm.models.lm_module import LanguageModelModule


def test_windows_are_transposed_within_the_keyboard():
    roll = np.zeros((4, 88), dtype=bool)
    roll[:, [0, 5]] = True  # the lowest key: no downward shift is possible
    pieces = RollPieces([roll])
    windows = TransposedWindows(pieces, seq_len=16, shifts=(-6, 5))
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
    windows = TransposedWindows(RollPieces([roll], enc), seq_len=16, shifts=shifts)
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
    assert (RollPieces([roll], PR.ENCODINGS["hold"])[0] == PR.HOLD).sum() == 2
    shifts = set()
    for shift, x, moved, expected in transposed_windows(roll, "hold", (-3, 3), 30):
        shifts.add(shift)
        assert (x == PR.HOLD).sum() == 2
        np.testing.assert_array_equal(moved, expected)
    assert shifts == set(range(-3, 4))


@pytest.fixture
def random_pieces():
    rng = np.random.default_rng(0)
    return RollPieces([rng.random((int(rng.integers(5, 40)), 88)) < 0.05 for _ in range(7)])


def test_piece_streams_walk_whole_pieces_row_by_row(random_pieces):
    windows = TransposedWindows(random_pieces, seq_len=16, shifts=(0, 0), carry=True)
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
    windows = TransposedWindows(random_pieces, seq_len=16, shifts=(0, 0), carry=True)
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
    windows = TransposedWindows(random_pieces, seq_len=16, shifts=(-5, 5), carry=True)
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
