"""The model python/bench/emitter.py saves (a Django app of the benchmark's own)."""
