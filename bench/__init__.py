"""Benchmarks of checkin-appliance: `make bench`, or `python -m bench.run` (see README.md)."""
