"""The ``melodylm`` command: prepare -> fit/validate/test -> sample / score / generate -> evaluate / bench.

Each subcommand's flags and job live in :mod:`melodylm.commands`; this module wires them into one parser and
turns a :class:`~melodylm.errors.UserError` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap

from melodylm.errors import UserError

EPILOG = """\
typical session:
  melodylm prepare music21:oneills1850 --melody --out datasets/prepared/oneills1850
  melodylm fit --config configs/quickstart.yaml
  melodylm sample --ckpt checkpoints/quickstart --num 4 --seed 0 --out samples/
  melodylm evaluate samples samples/ --reference datasets/prepared/oneills1850/manifest.jsonl --split test
  melodylm score --ckpt checkpoints/quickstart some.mid

fit, validate and test are Lightning's CLI: `melodylm fit --help` lists every flag.
Every subcommand answers --help.
"""


def build_parser() -> argparse.ArgumentParser:
    from melodylm.commands import bench, evaluate, generate, playlist, prepare, prior, sample, score

    parser = argparse.ArgumentParser(
        prog="melodylm", description="Symbolic music language models: MIDI in, trained LM, MIDI out.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str, module, add_arguments=None, **kwargs) -> None:
        p = sub.add_parser(name, help=help, **kwargs)
        (add_arguments or module.add_arguments)(p)

    add("prepare", "MIDI files -> manifest, quarantine and cached token arrays", prepare,
        description=prepare.DESCRIPTION)
    for name, what in (("fit", "train"), ("validate", "validation NLL of"), ("test", "test NLL of")):
        sub.add_parser(name, help=f"{what} a model from a config preset (Lightning CLI; see `melodylm {name} --help`)")
    add("sample", "generate MIDI (+ piano-roll PNG, WAV, JSON) from a checkpoint", sample,
        description="Generate pieces from a trained language model (over MIDI tokens or piano-roll frames). Every "
        "output is a MIDI file, a piano-roll PNG, a WAV and a JSON sidecar (seed, settings, log-probability, "
        "tokens). The same --seed gives byte-identical files.",
        epilog='example: melodylm sample --ckpt checkpoints/quickstart --primer tune.mid --primer-bars 2 --bars 8 '
        '--key "D major" --num 16 --seed 1 --out variations/')
    add("score", "NLL per token, note and second (and frame) of MIDI files", score,
        description="Score MIDI files under a language model: NLL in nats per token, per note, per second and, "
        "for a piano-roll model, per frame of its grid.",
        epilog="example: melodylm score --ckpt checkpoints/quickstart tune.mid other.mid")
    add("generate", "conditional generation with a seq2seq model: chords -> melody, melody -> chords", generate,
        description="Generate a part for a condition (a MIDI file, or chord symbols as text for a chords -> melody "
        "model) with a seq2seq checkpoint. Every output is a MIDI file holding the condition and the generated part "
        "as separate tracks, a piano-roll PNG and a JSON sidecar.",
        epilog='example: melodylm generate --ckpt checkpoints/seq2seq-chords2melody --condition "C G Am F" '
        '--chord-beats 4 --num 4 --seed 0 --out samples/c2m')
    add("evaluate", "metrics: generated samples vs held-out music, seq2seq test numbers, playlists", evaluate,
        description=evaluate.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add("rescore", "rank N-best transcriptions by acoustic + λ·LM log-probability", prior, prior.add_rescore_arguments,
        description="Rescore N-best lists of note sequences (from any transcription system) with a language model: "
        "each candidate's notes become the checkpoint's tokens on the list's beat grid and are ranked by acoustic "
        "score + λ · LM log-probability (nats).")
    add("transcribe", "melody (or --polyphonic: every note) of an audio file, decoded with an LM prior", prior,
        prior.add_transcribe_arguments,
        description=textwrap.fill("Transcribe the melody line of an audio file (needs `make transcribe-extra`): basic-pitch's "
        "note/onset posteriors are cut into note segments and decoded by beam search with the melody LM as a prior "
        "(acoustic + λ·LM); --no-prior gives the acoustic-only result. With --polyphonic, every note: the "
        "posteriors are pooled onto a piano-roll checkpoint's frame grid and decoded by a beam search over whole "
        "frames with that LM as the prior (--no-prior: frames above --threshold).", 100),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  melodylm transcribe tune.wav --ckpt checkpoints/nottingham-melody --bpm 120 "
        "--time-signature 6/8 --out tune.mid\n  melodylm transcribe chorale.wav --polyphonic "
        "--ckpt checkpoints/pianoroll-jsb --bpm 100 --out chorale.mid")
    add("bench", "benchmarks in the literature's units (piano-roll, melody, transcription)", bench,
        description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add("embed", "song embeddings of a folder of MIDI files with a music LM (for playlists)", playlist,
        playlist.add_embed_arguments,
        description="One vector per MIDI file: the music LM's last-layer LSTM states averaged over the file's "
        "tokens. Written to an .npz keyed by file name and reused on the next run with the same checkpoint.",
        epilog="example: melodylm embed --ckpt checkpoints/quickstart datasets/playlists/music21/midi "
        "--out datasets/playlists/music21/embeddings.npz")
    add("playlist", "a playlist title in, an ordered list of catalog tracks out", playlist,
        playlist.add_playlist_arguments,
        description="Generate a playlist with a trained playlist checkpoint: the title is encoded, the decoder "
        "emits one vector per track and each is matched to the nearest catalog track not yet in the list.",
        epilog='example: melodylm playlist --ckpt checkpoints/playlist-music21-ids --title "lively jigs" --n 20 '
        '--out list.json')
    add("build-playlists", "build an example playlist set (catalog + playlists JSONL)", playlist,
        playlist.add_build_arguments,
        description="Build the example playlist sets: `music21` from music21's own corpus (works on a fresh "
        "clone), `nottingham` from ../shared/data.",
        epilog="example: melodylm build-playlists music21 --out datasets/playlists/music21")
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
            from melodylm.commands import train

            train.cli(argv)
            return 0
        args = build_parser().parse_args(argv)
        from melodylm import commands

        return commands.run(args)
    except Exception as err:
        mistake = user_error(err)
        if mistake is None:
            raise
        print(f"melodylm: error: {mistake}", file=sys.stderr)
        return 2


def user_error(err: BaseException) -> UserError | None:
    """``err`` itself or the :class:`UserError` behind it (LightningCLI and jsonargparse wrap what a data module or
    model raises while they build it); None for a bug, which keeps its traceback."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
