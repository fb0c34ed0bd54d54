"""Playlist generation: a title in, an ordered list of catalog tracks out.

The one-to-many recurrent setup: a character LSTM reads the title, an LSTM
decoder emits one vector per step, and each vector is matched to the nearest
unused catalog track. Tracks are represented by song embeddings from the
music LM (``embed.py``, many-to-one: mean-pooled LSTM states over a tune's
tokens) or, for catalogs of bare ids, by learned id embeddings.

``data.py`` (JSONL playlists, catalog, titles -> ids) -> ``datamodule.py``
(batches) -> ``model.py`` (plain torch net + loading + decoding) ->
``melodylm/models/playlist_module.py`` (Lightning) -> ``metrics.py`` /
``evaluate.py`` (RecSys Challenge 2018 metrics and baselines);
``nottingham.py`` (needs ../shared/data) and ``music21set.py`` (music21's
corpus alone) build the small synthetic examples, with what they share in
``synthetic.py``; ``commands.py`` holds
``melodylm embed`` and ``melodylm playlist``.
"""
