"""Playlists (the one-to-many setup): song embeddings and the example playlist sets.

``embed.py`` turns each MIDI file of a catalog into one vector with the music
LM (many-to-one: mean-pooled LSTM states over a tune's tokens);
``music21set.py`` (music21's corpus alone) and ``nottingham.py`` (needs
../shared/data) build the small example sets, sharing ``synthetic.py``.
The rest of the family lives with its kind: the JSONL formats in
:mod:`melodylm.data.playlists`, batches in :mod:`melodylm.data.datamodules`,
the network in :mod:`melodylm.models.components.playlist` and its Lightning
module in :mod:`melodylm.models.playlist_module`, the loaded generator in
:mod:`melodylm.api.playlist`, the RecSys Challenge metrics in
:mod:`melodylm.evaluation.playlist`, the commands in :mod:`melodylm.commands.playlist`.
"""
