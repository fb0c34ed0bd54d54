"""One module per ``melodylm`` subcommand: its flags (``add_arguments``) and its job (``main``).

``prepare`` · ``train`` (fit / validate / test: LightningCLI) · ``sample`` · ``score`` · ``generate`` ·
``evaluate`` (samples, seq2seq, playlist) · ``prior`` (rescore, transcribe) · ``bench`` (pianoroll, melody,
transcription) · ``playlist`` (embed, playlist, build-playlists). :mod:`melodylm.cli` wires them together.
"""


def run(args) -> int:
    """Run the parsed subcommand ``args.command``; its exit status."""
    from melodylm.commands import bench, evaluate, generate, playlist, prepare, prior, sample, score
    from melodylm.commands.args import existing_checkpoint

    for flag in ("ckpt", "lm", "tagger"):  # a missing checkpoint: one line naming what trains it
        if getattr(args, flag, None):
            existing_checkpoint(getattr(args, flag), f"--{flag}")

    jobs = {
        "prepare": prepare.main, "sample": sample.main, "score": score.main, "generate": generate.main,
        "evaluate": evaluate.main, "bench": bench.main, "rescore": prior.rescore_main,
        "transcribe": prior.transcribe_main, "embed": playlist.embed_main, "playlist": playlist.playlist_main,
        "build-playlists": playlist.build_main,
    }
    return jobs[args.command](args)
