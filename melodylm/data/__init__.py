"""MIDI -> tokens -> batches.

``midi`` (read and clean a score; one melody line) · ``corpus`` (music21's corpus exported to MIDI) ·
``tokenizer`` (miditok) · ``prepare`` (folders -> manifest, quarantine, token arrays) · ``store`` (the arrays
on disk) · ``pianoroll`` (the piano-roll benchmark's rolls <-> frame tokens <-> MIDI) · ``chords`` and
``beats`` (chord symbols, labels per beat) · ``pairs`` (seq2seq pairs) · ``playlists`` (playlist and catalog
JSONL) · ``windows`` (datasets and samplers, plain torch) · ``datamodules`` (every LightningDataModule).
"""
