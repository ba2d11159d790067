"""AnomalyCLIP: detect and name anomalies in video, frame by frame, from video-level labels."""

__version__ = "0.1.0"
