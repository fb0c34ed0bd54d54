"""melodylm: symbolic music language models (MIDI -> miditok tokens -> LSTM LM -> MIDI)."""

__version__ = "0.1.0"


def load(path):
    """Load a checkpoint as a :class:`melodylm.lm.MusicLM` (no Lightning needed)."""
    from melodylm.lm import load as _load

    return _load(path)
