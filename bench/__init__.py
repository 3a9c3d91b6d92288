"""Benchmarks for the reconciler: cold/warm loads and edit-to-live latency.

Run with `python -m bench` (or `make bench`); see BENCHMARKS.md for the numbers. Every
number is reported next to a baseline measured in the same run (reading + `json.loads`
of equivalent JSON, python-hcl2, a bare watchdog observer), so ratios stay meaningful
across machines. This package is not imported by the reconciler or its tests.
"""
