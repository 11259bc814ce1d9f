"""Benchmarks of torchlime against the reference implementations (run as scripts, not tests)."""
