"""The benchmarks behind the documentation's results page and research log.

Run each from the repository root as ``python -m benchmarks.NAME``; what they
share is in :mod:`benchmarks._common`.
"""
