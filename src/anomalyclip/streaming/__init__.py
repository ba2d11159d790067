"""Scoring video while it arrives: the causal scorer (`StreamScorer`), the live sources, the
JSONL output and the session that ties them together for `anomalyclip stream`."""

from anomalyclip.streaming.scorer import ScoredFrames, StreamScorer

__all__ = ["ScoredFrames", "StreamScorer"]
