"""What :func:`melodylm.load` returns, one class per checkpoint kind (see :data:`melodylm.checkpoint.KINDS`).

``lm.MusicLM`` (a language model over miditok tokens), ``pianoroll.PianoRollLM``
(a language model over piano-roll frame tokens), ``seq2seq.ConditionalGenerator``,
``tagger.ChordTagger`` and ``playlist.Playlister``. None of them needs Lightning.
"""
