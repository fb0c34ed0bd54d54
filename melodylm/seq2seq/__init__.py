"""Sequence-to-sequence conditional generation: chords -> melody, melody -> chords (and a beat tagger baseline).

``pairs`` (condition, target) token pairs and their data module · ``chords``
chord symbols and per-beat chord labels · ``beats`` the aligned per-beat view
for the tagger · ``generate`` the ``melodylm generate`` command · ``evaluate``
the numbers in README.md.
"""
