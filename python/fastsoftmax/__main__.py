"""`python -m fastsoftmax`: a summary (SIMD target, speed-ups over NumPy, worst error), then
a benchmark table against NumPy; about 12 s, progress on stderr (see .bench.cli)."""

from .bench import main_job

raise SystemExit(main_job())
