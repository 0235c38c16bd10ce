"""Small I/O helpers shared by the whole package (audio rate, atomic writes, checkpoint names)."""

SAMPLE_RATE = 16000  # Hz: every model, corpus and feature in the project runs at 16 kHz
