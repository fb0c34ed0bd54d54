"""How good the music is: metrics and benchmarks.

``music`` (per-piece features, MGEval OA/KL between sets) · ``samples`` (``melodylm evaluate samples``) ·
``seq2seq`` (conditional generation on the test split) · ``playlist`` (RecSys Challenge 2018 metrics) ·
``bench_pianoroll``, ``bench_melody``, ``bench_transcription`` (``melodylm bench``) · ``report``
(machine and Markdown table for every report).
"""
