"""Hunting what no list knows yet: newly seen, rare, beacon, sequence and tunnel/DGA signals
over the queries the network resolved, turned into scored suspicions (issue 14)."""

from sinkhole.hunt.engine import Hunter
from sinkhole.hunt.model import SIGNALS, WEIGHTS, Suspicion
from sinkhole.hunt.sequences import SequenceError
from sinkhole.hunt.state import HuntStateError, read_suspicions

__all__ = ["SIGNALS", "WEIGHTS", "HuntStateError", "Hunter", "SequenceError", "Suspicion",
           "read_suspicions"]
