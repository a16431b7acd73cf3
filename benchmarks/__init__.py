"""amp_braze benchmarks: ``python -m benchmarks <scenario> [options]``."""
