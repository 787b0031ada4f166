"""`python -m fastsoftmax`: the SIMD target in use and a benchmark table against NumPy."""

from .bench import main_job

raise SystemExit(main_job())
