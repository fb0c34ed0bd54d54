"""melodylm: symbolic music language models (MIDI -> miditok tokens -> LSTM LM -> MIDI)."""

__version__ = "0.1.0"


def load(path):
    """The model in a checkpoint file or run folder, as the object for its kind (no Lightning needed):
    a :class:`~melodylm.api.lm.MusicLM`, :class:`~melodylm.api.pianoroll.PianoRollLM`,
    :class:`~melodylm.api.seq2seq.ConditionalGenerator`, :class:`~melodylm.api.tagger.ChordTagger` or
    :class:`~melodylm.api.playlist.Playlister`."""
    from melodylm.checkpoint import load as _load

    return _load(path)
