"""``melodylm score``: NLL per token and per note of MIDI files under a checkpoint."""

from __future__ import annotations

import json
import logging

from melodylm.errors import UserError
from melodylm.lm import load
from melodylm.sample import resolve_checkpoint

log = logging.getLogger(__name__)


def main(args) -> int:
    lm = load(resolve_checkpoint(args.ckpt))
    failures = 0
    if not args.json:
        print(f"{'nll/token':>10} {'nll/note':>10} {'nll/sec':>9} {'tokens':>7} {'notes':>6}  file   (nats)")
    for path in args.files:
        try:
            r = lm.score(path)
        except UserError as err:
            failures += 1
            print(json.dumps({"path": path, "error": str(err)}) if args.json else f"error: {err}")
            continue
        row = {"path": path, "nll_token": r.nll_token, "nll_note": r.nll_note, "nll_second": r.nll_second,
               "tokens": r.tokens,
               "notes": r.notes, "seconds": r.seconds, "logprob": r.logprob}
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{r.nll_token:10.4f} {r.nll_note:10.4f} {r.nll_second:9.3f} {r.tokens:7d} {r.notes:6d}  {path}")
    return 1 if failures else 0
