"""``melodylm score``: NLL per token, per note and per second (per frame for a piano-roll model) of MIDI files."""

from __future__ import annotations

import json
import logging

from melodylm.api.pianoroll import PianoRollLM
from melodylm.checkpoint import LANGUAGE_MODELS, load
from melodylm.errors import UserError

log = logging.getLogger(__name__)


def add_arguments(c) -> None:
    c.add_argument("--ckpt", required=True, help="checkpoint file or run folder (a language model or a piano-roll one)")
    c.add_argument("files", nargs="+", help="MIDI files")
    c.add_argument("--json", action="store_true", help="one JSON object per file")


def main(args) -> int:
    lm = load(args.ckpt, kinds=LANGUAGE_MODELS)
    failures = 0
    framed = isinstance(lm, PianoRollLM)
    if not args.json:
        frame_col = f" {'nll/frame':>10}" if framed else ""
        print(f"{'nll/token':>10}{frame_col} {'nll/note':>10} {'nll/sec':>9} {'tokens':>7} {'notes':>6}  file   (nats)")
    for path in args.files:
        try:
            r = lm.score(path)
        except UserError as err:
            failures += 1
            print(json.dumps({"path": path, "error": str(err)}) if args.json else f"error: {err}")
            continue
        row = {"path": path, "nll_token": r.nll_token, "nll_note": r.nll_note, "nll_second": r.nll_second,
               "tokens": r.tokens, "notes": r.notes, "seconds": r.seconds, "logprob": r.logprob}
        if framed:
            row.update(nll_frame=r.nll_frame, frames=r.frames)
        if args.json:
            print(json.dumps(row))
        else:
            frame_col = f" {r.nll_frame:10.4f}" if framed else ""
            print(f"{r.nll_token:10.4f}{frame_col} {r.nll_note:10.4f} {r.nll_second:9.3f} {r.tokens:7d} {r.notes:6d}  {path}")
    return 1 if failures else 0
