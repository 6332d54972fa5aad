"""Benchmarks and measurements behind docs/benchmarks.md; run as modules from the repository root
(`python -m benchmarks.bench_dicom`), or through `duet bench`, which imports what it runs."""
