"""Fuzzing: the invariants (harness.py), atheris targets and their seed corpus."""
