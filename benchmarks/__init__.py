"""memoracle: benchmarks."""
