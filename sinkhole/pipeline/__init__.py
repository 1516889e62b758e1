"""The query pipeline: stages as data, the decision as a value (see chain.py)."""

from sinkhole.pipeline.answer import RESULTS, Answer
from sinkhole.pipeline.chain import Pipeline, build_pipeline

__all__ = ["RESULTS", "Answer", "Pipeline", "build_pipeline"]
