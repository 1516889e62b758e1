"""Fuzzing: the invariants (packets, listchecks, common), atheris targets, seed corpus."""
