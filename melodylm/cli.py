"""The ``melodylm`` command: prepare -> fit/validate/test -> sample / score."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from melodylm.errors import UserError

EPILOG = """\
typical session:
  melodylm prepare music21:oneills1850 --melody --out datasets/prepared/oneills1850
  melodylm fit --config configs/quickstart.yaml
  melodylm sample --ckpt checkpoints/quickstart --num 4 --seed 0 --out samples/
  melodylm score --ckpt checkpoints/quickstart some.mid

fit, validate and test are Lightning's CLI: `melodylm fit --help` lists every flag.
"""


def _range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH integers, got {text!r}") from None
    return low, high


def _shifts(text: str) -> tuple[int, int]:
    """``N`` means every shift from -N to +N; ``LOW:HIGH`` is explicit (write ``--transpose=-5:6``)."""
    if ":" in text:
        return _range(text)
    try:
        n = abs(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or LOW:HIGH semitones, got {text!r}") from None
    return -n, n


def add_decoding_arguments(parser: argparse.ArgumentParser, max_tokens: int = 512, min_notes: int = 16,
                           bars_help: str = "stop after this many bars of new music") -> None:
    """The length, sampling and constraint flags of ``sample``, shared by every command that decodes."""
    g = parser.add_argument_group("length (whichever comes first, besides the model's own end token)")
    g.add_argument("--max-tokens", type=int, default=max_tokens, help=f"token budget per piece (default {max_tokens})")
    g.add_argument("--bars", type=int, default=None, help=bars_help)
    g.add_argument("--seconds", type=float, default=None, help="stop after this many seconds of new music (120 bpm)")
    g = parser.add_argument_group("sampling")
    g.add_argument("--temperature", type=float, default=1.0, help="> 0; below 1 is more conservative (default 1)")
    g.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0: off)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages recently used tokens (1: off)")
    g.add_argument("--greedy", action="store_true", help="always take the most likely token")
    g.add_argument("--beam", type=int, default=0, metavar="SIZE", help="beam search with this beam size: the most likely continuations")
    g.add_argument("--length-penalty", type=float, default=1.0, help="beam search: rank by log p / length^this (default 1)")
    g = parser.add_argument_group("constraints")
    g.add_argument("--key", default=None, help='only pitches of this scale, e.g. "D major", "A minor", "E dorian"')
    g.add_argument("--pitch-range", type=_range, default=None, help="LOW:HIGH MIDI pitches allowed, high exclusive")
    g.add_argument("--monophonic", action="store_true", help="one note at a time")
    g.add_argument("--min-notes", type=int, default=min_notes, help=f"forbid ending before this many notes (default {min_notes})")
    g.add_argument("--no-grammar", action="store_true", help="do not mask token successions that cannot decode to MIDI")


def build_parser() -> argparse.ArgumentParser:
    from melodylm import evaluate
    from melodylm.prepare import default_workers

    parser = argparse.ArgumentParser(
        prog="melodylm", description="Symbolic music language models: MIDI in, trained LM, MIDI out.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("prepare", help="MIDI files -> manifest, quarantine and cached token arrays",
                       description="Check every input file in an isolated worker, tokenize the usable ones "
                       "with miditok and cache token arrays per split. Inputs: folders (searched recursively), "
                       "files, or music21:NAME for a corpus shipped with music21 (bach, oneills1850, "
                       "essenFolksong, ryansMammoth, ...), exported once to MIDI under --export-dir.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="folder, file or music21:NAME")
    p.add_argument("--out", required=True, type=Path, help="output folder (manifest, quarantine, tokens, tokenizer)")
    p.add_argument("--tokenizer", default="REMI", choices=["REMI", "TSD", "MIDILike"], help="miditok scheme (default REMI)")
    p.add_argument("--velocities", type=int, default=0, help="velocity bins; 0 leaves velocity out (default)")
    p.add_argument("--bpe-vocab", type=int, default=0, help="learn BPE on the training split up to this vocabulary size (0: off)")
    p.add_argument("--melody", action="store_true", help="reduce to one monophonic line: the highest note at each onset")
    p.add_argument("--tracks", default="", help="comma list of track indices or name substrings (default: all non-drum tracks)")
    p.add_argument("--pitch-range", type=_range, default=(21, 109), help="LOW:HIGH MIDI pitches kept, high exclusive (default 21:109)")
    p.add_argument("--min-notes", type=int, default=16, help="quarantine files with fewer notes (default 16)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="quarantine files longer than this (default 600)")
    p.add_argument("--transpose", type=_shifts, default=(0, 0), metavar="N|LOW:HIGH",
                   help="add transposed copies of training pieces: N for every shift in -N..N, or --transpose=-5:6 (default 0: none)")
    p.add_argument("--val-frac", type=float, default=0.1, help="share of files in the validation split (default 0.1)")
    p.add_argument("--test-frac", type=float, default=0.1, help="share of files in the test split (default 0.1)")
    p.add_argument("--workers", type=int, default=default_workers(), help="worker processes (default: CPU cores)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one file may take before it is quarantined (default 60)")
    p.add_argument("--export-dir", type=Path, default=Path("datasets"), help="where music21 corpora are exported to MIDI (default datasets/)")
    p.add_argument("--corpus-files", type=int, default=None, help="use only the first N source files of a music21 corpus")

    s = sub.add_parser("sample", help="generate MIDI (+ piano-roll PNG, WAV, JSON) from a checkpoint",
                       description="Generate pieces from a trained language model. Every output is a MIDI file, "
                       "a piano-roll PNG, a WAV and a JSON sidecar (seed, settings, log-probability, tokens). "
                       "The same --seed gives byte-identical files.",
                       epilog='example: melodylm sample --ckpt checkpoints/quickstart --primer tune.mid '
                       '--primer-bars 2 --bars 8 --key "D major" --num 16 --seed 1 --out variations/')
    s.add_argument("--ckpt", required=True, help="checkpoint file, or a run folder (its best, else last.ckpt)")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument("--num", type=int, default=4, help="pieces to generate, in one batch (default 4)")
    s.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same files (default 0)")
    add_decoding_arguments(s)
    g = s.add_argument_group("primer")
    g.add_argument("--primer", type=Path, default=None, help="MIDI file the samples continue")
    g.add_argument("--primer-bars", type=int, default=None, help="use only the primer's first N bars")
    g.add_argument("--drop-primer", action="store_true", help="write only the continuation, not the primer")
    s.add_argument("--no-wav", action="store_true", help="skip the WAV rendering")

    from melodylm.seq2seq import generate as seq2seq_generate

    q = sub.add_parser("generate", help="conditional generation with a seq2seq model: chords -> melody, melody -> chords",
                       description="Generate a part for a condition (a MIDI file, or chord symbols as text for a "
                       "chords -> melody model) with a seq2seq checkpoint. Every output is a MIDI file holding the "
                       "condition and the generated part as separate tracks, a piano-roll PNG and a JSON sidecar.",
                       epilog='example: melodylm generate --ckpt checkpoints/seq2seq-chords2melody '
                       '--condition "C G Am F" --chord-beats 4 --num 4 --seed 0 --out samples/c2m')
    seq2seq_generate.add_arguments(q)
    add_decoding_arguments(q, max_tokens=1024, min_notes=1, bars_help="stop after this many bars (default: the condition's bars)")

    c = sub.add_parser("score", help="NLL per token and per note of MIDI files")
    c.add_argument("--ckpt", required=True, help="checkpoint file or run folder")
    c.add_argument("files", nargs="+", help="MIDI files")
    c.add_argument("--json", action="store_true", help="one JSON object per file")

    e = sub.add_parser("evaluate", help="music metrics of generated MIDI vs a reference folder (MGEval-style OA/KL)")
    evaluate.add_arguments(e)

    from melodylm.prior import commands as prior_commands

    rs = sub.add_parser("rescore", help="rank N-best transcriptions by acoustic + λ·LM log-probability",
                        description="Rescore N-best lists of note sequences (from any transcription system) with "
                        "a language model: each candidate's notes become the checkpoint's tokens on the list's beat "
                        "grid and are ranked by acoustic score + λ · LM log-probability (nats).")
    prior_commands.add_rescore_arguments(rs)
    tr = sub.add_parser("transcribe", help="melody of an audio file: basic-pitch posteriors decoded with the LM prior",
                        description="Transcribe the melody line of an audio file (needs `make transcribe-extra`): "
                        "basic-pitch's note/onset posteriors are cut into note segments and decoded by beam search "
                        "with the melody LM as a prior (acoustic + λ·LM); --no-prior gives the acoustic-only result.",
                        epilog="example: melodylm transcribe tune.wav --ckpt checkpoints/nottingham-melody "
                        "--bpm 120 --time-signature 6/8 --out tune.mid")
    prior_commands.add_transcribe_arguments(tr)

    b = sub.add_parser("bench", help="likelihood benchmarks in the literature's units (piano-roll, melody)")
    bsub = b.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    r = bsub.add_parser("pianoroll", help="train and test on a piano-roll .mat file: test NLL in nats per frame",
                        description="Boulanger-Lewandowski piano-roll benchmark (JSB Chorales, Nottingham, MuseData, "
                        "Piano-midi.de, or any .mat with traindata/validdata/testdata of frames x 88 binary rolls). "
                        "Checks that every piece converts to tokens and MIDI losslessly, trains the recipe's LSTM "
                        "(data.transpose: random keys; data.carry_state: each piece walked whole, the state carried "
                        "from window to window), keeps the epoch with the best validation NLL, and writes "
                        "OUT/results.json, OUT/checkpoints/ and OUT/samples/ (MIDI + PNG).",
                        epilog="example: melodylm bench pianoroll --data JSB_Chorales.mat "
                        "--config configs/pianoroll-jsb.yaml --out runs/jsb")
    r.add_argument("--data", required=True, type=Path, help="the .mat file")
    r.add_argument("--out", required=True, type=Path, help="output folder")
    r.add_argument("--config", default=None, help="recipe YAML (model/data/train sections); default: built-in defaults")
    r.add_argument("--max-minutes", type=float, default=60.0,
                   help="cap on wall-clock training time (default 60); the learning rate anneals within 95%% of it")
    r.add_argument("--epochs", type=int, default=None, help="override the recipe's epoch count")
    r.add_argument("--max-pieces", type=int, default=None, help="use only the first N pieces of each split (quick checks)")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")

    m = bsub.add_parser("melody", help="NLL per note of a trained LM on a prepared split, next to n-gram baselines",
                        description="Scores the test split of a prepared folder with the checkpoint and with "
                        "unigram / interpolated-bigram token baselines fitted on its training split (smoothing "
                        "chosen on its validation split). Every token counts, EOS included.",
                        epilog="example: melodylm bench melody --ckpt checkpoints/nottingham-melody "
                        "--data datasets/prepared/nottingham-melody --out runs/melody.json")
    m.add_argument("--ckpt", required=True, help="checkpoint file or run folder")
    m.add_argument("--data", required=True, type=Path, help="the folder written by `melodylm prepare`")
    m.add_argument("--split", default="test", choices=["val", "test"], help="split to report (default test)")
    m.add_argument("--out", type=Path, default=None, help="write the results as JSON here")

    from melodylm.playlist import commands as playlist_commands

    em = sub.add_parser("embed", help="song embeddings of a folder of MIDI files with a music LM (for playlists)",
                        description="One vector per MIDI file: the music LM's last-layer LSTM states averaged over "
                        "the file's tokens. Written to an .npz keyed by file name and reused on the next run with "
                        "the same checkpoint.",
                        epilog="example: melodylm embed --ckpt checkpoints/nottingham-melody "
                        "../shared/data/nottingham/MIDI/melody --out datasets/playlists/nottingham/embeddings.npz")
    playlist_commands.add_embed_arguments(em)
    pl = sub.add_parser("playlist", help="a playlist title in, an ordered list of catalog tracks out",
                        description="Generate a playlist with a trained playlist checkpoint: the title is encoded, "
                        "the decoder emits one vector per track and each is matched to the nearest catalog track "
                        "not yet in the list.",
                        epilog='example: melodylm playlist --ckpt checkpoints/playlist-nottingham '
                        '--title "lively jigs" --n 20 --out list.json')
    playlist_commands.add_playlist_arguments(pl)

    for name, what in (("fit", "train"), ("validate", "validation NLL of"), ("test", "test NLL of")):
        sub.add_parser(name, help=f"{what} a model from a config preset (Lightning CLI; see `melodylm {name} --help`)")
    return parser


def _setup_logging() -> None:
    from rich.logging import RichHandler

    log = logging.getLogger("melodylm")
    if not log.handlers:  # Lightning configures its own loggers; only ours go through rich here
        log.addHandler(RichHandler(show_path=False, show_time=False, show_level=False))
        log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _setup_logging()
    os.environ.setdefault("WANDB_MODE", "offline")  # every command that logs to wandb: offline unless told otherwise
    try:
        if argv and argv[0] in ("fit", "validate", "test"):
            from melodylm import train

            train.run(argv)
            return 0
        args = build_parser().parse_args(argv)
        if args.command == "prepare":
            return _prepare(args)
        if args.command == "sample":
            from melodylm import sample

            sample.main(args)
            return 0
        if args.command == "bench":
            return _bench(args)
        if args.command == "generate":
            from melodylm.seq2seq import generate as seq2seq_generate

            return seq2seq_generate.main(args)
        if args.command == "evaluate":
            from melodylm import evaluate

            return evaluate.main(args)
        if args.command in ("embed", "playlist"):
            from melodylm.playlist import commands as playlist_commands

            return (playlist_commands.embed_main if args.command == "embed" else playlist_commands.playlist_main)(args)
        if args.command in ("rescore", "transcribe"):
            from melodylm.prior import commands as prior_commands

            return (prior_commands.rescore_main if args.command == "rescore" else prior_commands.transcribe_main)(args)
        from melodylm import score

        return score.main(args)
    except UserError as err:
        print(f"melodylm: error: {err}", file=sys.stderr)
        return 2


def _bench(args) -> int:
    if args.bench == "melody":
        from melodylm.benchmarks import melody

        melody.run(args.ckpt, args.data, args.out, split=args.split)
        return 0
    from melodylm.benchmarks import pianoroll
    from melodylm.benchmarks.recipe import load_recipe

    recipe = load_recipe(args.config)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    pianoroll.run(args.data, args.out, recipe, max_minutes=args.max_minutes, max_pieces=args.max_pieces,
                  epochs=args.epochs, recipe_path=args.config)
    return 0


def _prepare(args) -> int:
    from melodylm.midi import CleanOptions
    from melodylm.prepare import PrepareSettings, prepare

    settings = PrepareSettings(
        tokenizer=args.tokenizer, velocities=args.velocities, bpe_vocab=args.bpe_vocab,
        clean=CleanOptions(min_notes=args.min_notes, max_seconds=args.max_seconds, melody=args.melody,
                           tracks=[t.strip() for t in args.tracks.split(",") if t.strip()],
                           pitch_range=args.pitch_range),
        transpose=args.transpose, val_frac=args.val_frac, test_frac=args.test_frac,
    )
    summary = prepare(args.inputs, args.out, settings, workers=args.workers, timeout=args.timeout,
                      export_root=args.export_dir, corpus_files=args.corpus_files)
    log = logging.getLogger("melodylm")
    log.info("%d files: %d used (pieces train/val/test %s), %d quarantined%s",
             summary["files"], summary["used"], "/".join(str(v) for v in summary["pieces"].values()),
             summary["quarantined"],
             "".join(f"\n  {n} {code}" for code, n in sorted(summary["quarantined_by_reason"].items())))
    log.info("tokens train/val/test %s, vocabulary %d; wrote %s/{manifest,quarantine}.jsonl, tokenizer.json, tokens/",
             "/".join(str(v) for v in summary["tokens"].values()), summary["vocab_size"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
