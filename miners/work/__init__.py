"""The real work behind the reference miner, as plain library code (no HTTP).

- ``summarize``: extractive summaries in pure Python.
- ``speech``: text to WAV with the espeak-ng library that ``espeakng-loader`` ships.
- ``transcribe``: speech to text with PocketSphinx's bundled US English model.
- ``audio``: decoding uploads to the 16 kHz mono PCM the recogniser needs.
- ``words``: the one notion of "word" shared by the summariser and the scorer.

Import the module you need; each loads its native library only on first use.
"""
