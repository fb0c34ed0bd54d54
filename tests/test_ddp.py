"""Lightning's DDP (gloo, two CPU processes) for every training family, and the shards it relies on."""

import json
import random

import numpy as np
import pytest
import torch

import melodylm
from melodylm.data import pianoroll as PR
from melodylm.data.store import Pieces
from melodylm.data.windows import LengthSortedBatches, PieceStreams, RollPieces, TransposedWindows
from tests.conftest import REPO, SHARED_DATA, run_cli
from tests.test_benchmarks import random_rolls, write_mat

DDP = ("--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp")


def test_held_out_batches_shard_disjointly_and_cover_every_piece():
    lengths = np.random.default_rng(0).integers(5, 50, size=23)
    shards = [LengthSortedBatches(lengths, batch_size=4, rank=r, world=2) for r in range(2)]
    seen = [[i for b in s for i in b] for s in shards]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(23))  # every piece once: none repeated to even the shards
    assert all(len(s) >= 1 for s in shards)


def test_carried_streams_deal_each_rank_its_own_pieces():
    rng = np.random.default_rng(0)
    pieces = RollPieces([rng.random((int(rng.integers(5, 40)), 88)) < 0.05 for _ in range(9)])
    dealt = []
    for rank in range(2):
        windows = TransposedWindows(pieces, seq_len=16, shifts=(0, 0), carry=True)
        streams = PieceStreams(windows, batch_size=2, rank=rank, world=2)
        batches = list(streams)
        assert len(batches) == -(-len(windows) // 4)  # the same epoch length on every rank
        dealt.append({windows.index[i][0] for b in batches for i in b})
    first_round = [set(np.random.default_rng((0, 0)).permutation(9)[r::2].tolist()) for r in range(2)]
    assert not first_round[0] & first_round[1] and first_round[0] | first_round[1] == set(range(9))
    assert all(d & f for d, f in zip(dealt, first_round))
    with pytest.raises(ValueError, match="cannot be shared"):
        PieceStreams(TransposedWindows(RollPieces([np.zeros((3, 88), bool)]), 16, (0, 0), carry=True), 2, world=2)


def _best_score(run_dir):
    ckpt = torch.load(run_dir / "last.ckpt", weights_only=True, map_location="cpu")
    state = next(v for k, v in ckpt["callbacks"].items()  # the best checkpoint's callback, not the step one
                 if k.startswith("ModelCheckpoint") and v.get("best_model_score") is not None)
    return float(state["best_model_score"]), state["best_model_path"]


@pytest.mark.slow
@pytest.mark.parametrize("carry", [False, True])
def test_ddp_fits_the_lm_and_sums_the_validation_nll_across_ranks(tmp_path, prepared, carry):
    run_cli("fit", "--config", str(REPO / "configs" / "debug.yaml"), "--data.init_args.data_dir", str(prepared),
            "--data.init_args.carry_state", str(carry).lower(), "--trainer.limit_val_batches", "1.0", *DDP,
            cwd=tmp_path)
    score, best = _best_score(tmp_path / "checkpoints" / "debug")
    lm = melodylm.load(best)
    val = Pieces(prepared, "val")
    logps = lm.decoder.token_logprobs([val[i].tolist() for i in range(len(val))])
    single = -sum(float(lp.sum()) for lp in logps) / sum(len(lp) for lp in logps)
    assert score == pytest.approx(single, abs=1e-4)  # the two ranks' sums and counts, not a mean of means


@pytest.mark.slow
def test_ddp_fits_the_piano_roll_lm(tmp_path):
    rng = np.random.default_rng(0)
    mat = write_mat(tmp_path / "tiny.mat", {k: random_rolls(rng, n) for k, n in
                                           (("traindata", 12), ("validdata", 4), ("testdata", 5))})
    run_cli("fit", "--config", str(REPO / "configs" / "pianoroll" / "jsb.yaml"), "--data.init_args.path", str(mat),
            "--data.init_args.seq_len", "32", "--model.init_args.hidden_size", "16", "--model.init_args.embedding_dim",
            "8", "--trainer.max_epochs", "1", "--trainer.logger", "false", *DDP, cwd=tmp_path)
    score, best = _best_score(tmp_path / "checkpoints" / "pianoroll-jsb")
    lm = melodylm.load(best)
    val = PR.load_mat(mat)["val"]
    total = -sum(float(lm.decoder.token_logprobs([lm.encode(r)[0]])[0].sum()) for r in val)
    assert score == pytest.approx(total / sum(len(r) for r in val), abs=1e-4)  # val/nll_frame over both ranks


@pytest.mark.slow
def test_ddp_fits_the_playlist_model(tmp_path):
    rng = random.Random(0)
    ids = {g: [f"{g[0]}{i}" for i in range(8)] for g in ("jigs", "waltzes")}
    rows = [{"pid": str(i), "title": f"lively {g}", "tracks": rng.sample(ids[g], 4)}
            for i, g in enumerate(["jigs", "waltzes"] * 30)]
    lists = tmp_path / "playlists.jsonl"
    lists.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_cli("fit", "--config", str(REPO / "configs" / "playlist" / "debug.yaml"), "--data.init_args.playlists",
            str(lists), *DDP, cwd=tmp_path)
    assert isinstance(melodylm.load(tmp_path / "checkpoints" / "playlist-debug"), melodylm.api.playlist.Playlister)


NOTTINGHAM = SHARED_DATA / "nottingham" / "MIDI"


@pytest.mark.slow
@pytest.mark.skipif(not (NOTTINGHAM / "melody").is_dir(), reason=f"{NOTTINGHAM} is absent (set MELODYLM_SHARED_DATA)")
@pytest.mark.parametrize("config, folder", [("debug", "seq2seq-debug"), ("tagger", "seq2seq-tagger")])
def test_ddp_fits_the_seq2seq_and_tagger_models(tmp_path, config, folder):
    extra = ("--trainer.max_epochs", "1", "--data.init_args.limit", "80") if config == "tagger" else ()
    run_cli("fit", "--config", str(REPO / "configs" / "seq2seq" / f"{config}.yaml"), "--data.init_args.root",
            str(NOTTINGHAM), "--data.init_args.cache_dir", str(tmp_path / "cache"), *extra, *DDP, cwd=tmp_path)
    assert (tmp_path / "checkpoints" / folder / "last.ckpt").is_file()
