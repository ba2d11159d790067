"""The causal scorer and the live sources: scores arrive while the source still runs, never
change once given, come from the window ending at their hop, and equal the offline scores
when one window at the end holds the whole video."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
import torch

from anomalyclip.errors import InputError
from anomalyclip.events import EventRules, EventTracker, anomalous_spans
from anomalyclip.model import AnomalyCLIP
from anomalyclip.predictor import Predictor
from anomalyclip.streaming import StreamScorer
from anomalyclip.streaming.jsonl import JsonlSink
from anomalyclip.streaming.session import StreamSession
from anomalyclip.streaming.sources import FrameFeed, SourceFrame, VideoSource, paced
from anomalyclip.video import decode
from anomalyclip.video.encoder import ClipImageEncoder, build_random_clip_vision
from conftest import tiny_model_config
from media import decode_all, make_video

D = 512


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    model = AnomalyCLIP(tiny_model_config(feature_dim=D))
    with torch.no_grad():
        model.centroid.normal_(0, 0.3)
    return Predictor(model.eval(), threshold=0.5)


@pytest.fixture(scope="module")
def encoder():
    return ClipImageEncoder("tiny-random", device="cpu", batch_size=8, model=build_random_clip_vision(seed=2))


def features(t: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((t, D)).astype(np.float32)


def stream(scorer: StreamScorer, x: np.ndarray, chunks) -> list:
    """Push `x` in the given chunk sizes, then flush; every non-empty output with the number of
    frames pushed when it came."""
    out, at = [], 0
    for n in chunks:
        got = scorer.push(x[at : at + n])
        at += n
        if got.num_frames:
            out.append((at, got))
    got = scorer.flush()
    if got.num_frames:
        out.append((at, got))
    return out


def joined(outputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frames = np.concatenate([o.frames for _, o in outputs])
    return frames, np.concatenate([o.scores for _, o in outputs]), np.concatenate([o.probs for _, o in outputs])


@pytest.mark.parametrize("t", [1, 37, 300, 512])
def test_one_window_at_the_end_gives_the_offline_scores(predictor, t):
    x = features(t, seed=t)
    offline = predictor.predict(x)
    for chunks in ([t], [1] * t):
        outputs = stream(StreamScorer(predictor, hop=512), x, chunks)
        frames, scores, probs = joined(outputs)
        assert np.array_equal(frames, np.arange(t))
        assert np.array_equal(scores, offline.scores) and np.array_equal(probs, offline.probs)  # bit for bit
        assert len(outputs) == 1  # one window, at the end


@pytest.mark.parametrize("hop", [16, 64])
def test_each_frame_is_scored_by_the_window_ending_at_its_hop(predictor, hop):
    t = 700  # the window slides past the first 512 frames
    x = features(t, seed=1)
    rng = np.random.default_rng(hop)
    chunks = list(rng.integers(1, 50, size=60))
    outputs = stream(StreamScorer(predictor, hop=hop), x, chunks)
    frames, scores, probs = joined(outputs)
    assert np.array_equal(frames, np.arange(t))  # every frame once, in order
    for first in range(0, t, hop):
        end = min(t, first + hop)  # the last frame of the hop (the flush for the tail)
        start = max(0, end - 512)
        ref = predictor.predict(x[start:end])  # the offline test mode on that window alone
        np.testing.assert_allclose(scores[first:end], ref.scores[first - start :], rtol=0, atol=1e-6)
        np.testing.assert_allclose(probs[first:end], ref.probs[first - start :], rtol=0, atol=1e-6)
    # a score is returned once the frames that made it have arrived, never before
    for pushed, out in outputs:
        assert out.frames[-1] < pushed


def test_scores_never_change_and_later_frames_do_not_reach_them(predictor):
    t, hop = 600, 16
    a = features(t, seed=2)
    first = joined(stream(StreamScorer(predictor, hop=hop), a, [5] * (t // 5)))
    for cut in (16, 160, 544):
        b = a.copy()
        b[cut:] = features(t - cut, seed=99)  # a different future
        scorer = StreamScorer(predictor, hop=hop)
        given = scorer.push(b[:cut])  # exactly the scores that were final after `cut` frames
        assert given.num_frames == cut  # cut is a multiple of the hop: all of them
        assert np.array_equal(given.scores, first[1][:cut]) and np.array_equal(given.probs, first[2][:cut])
    rest = joined(stream(scorer, b[cut:], [t - cut]))
    assert not np.allclose(rest[1], first[1][cut:])  # the future did change what came after


def test_first_score_after_one_hop_then_one_per_hop(predictor):
    scorer = StreamScorer(predictor, hop=16)
    x = features(100, seed=3)
    arrivals = [i + 1 for i in range(100) if scorer.push(x[i]).num_frames]
    assert arrivals == [16, 32, 48, 64, 80, 96]
    assert scorer.pending == 4 and scorer.flush().num_frames == 4 and scorer.forwards == 7


def test_frames_from_a_generator_score_before_it_ends(predictor, encoder):
    t = 40
    pictures = np.random.default_rng(4).integers(0, 256, size=(t, 64, 80, 3), dtype=np.uint8)
    taken = []

    def camera():
        for k in range(t):
            taken.append(k)
            yield pictures[k]

    scorer = StreamScorer(predictor, hop=16, encoder=encoder, encode_batch=4)
    parts = []
    for frame in camera():
        out = scorer.push_frames(frame)
        if out.num_frames:
            parts.append((len(taken), out))
    parts.append((len(taken), scorer.flush()))
    assert parts[0][0] == 16 < t  # the first scores came with the 16th frame
    frames = np.concatenate([o.frames for _, o in parts])
    scores = np.concatenate([o.scores for _, o in parts])
    assert np.array_equal(frames, np.arange(t))
    # the same as encoding all frames at once and streaming the features
    expected = joined(stream(StreamScorer(predictor, hop=16), encoder.encode(pictures), [t]))[1]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)


def test_bad_settings_and_inputs_are_input_errors(predictor):
    with pytest.raises(InputError, match="--hop"):
        StreamScorer(predictor, hop=0)
    with pytest.raises(InputError, match="--hop"):
        StreamScorer(predictor, hop=513)
    scorer = StreamScorer(predictor)
    with pytest.raises(InputError, match="shape"):
        scorer.push(np.zeros((3, 256), np.float32))
    with pytest.raises(InputError, match="non-finite"):
        scorer.push(np.full((2, D), np.nan, np.float32))
    with pytest.raises(InputError, match="encoder"):
        scorer.push_frames(np.zeros((1, 8, 8, 3), np.uint8))


# ---------------------------------------------------------------------- sources
def test_live_sources_reach_pyav_unchanged(monkeypatch):
    url = "rtsp://user:pw@cam.local:554/Streaming/Channels/101?transportmode=unicast"
    args = decode.container_arguments(url, options={"rtsp_transport": "tcp", "stimeout": "5000000"})
    assert args == {"file": url, "mode": "r", "options": {"rtsp_transport": "tcp", "stimeout": "5000000"},
                    "timeout": (decode.OPEN_TIMEOUT_S, decode.READ_TIMEOUT_S)}
    assert decode.container_arguments("/dev/video0", options={"video_size": "640x480"}) == {
        "file": "/dev/video0", "mode": "r", "format": "v4l2", "options": {"video_size": "640x480"}}
    assert decode.container_arguments("http://host/live.m3u8")["file"] == "http://host/live.m3u8"
    assert decode.container_arguments("clip.mp4") == {"file": "clip.mp4", "mode": "r"}

    import av

    seen = []

    def refuse(**kwargs):
        seen.append(kwargs)
        raise OSError("Connection refused")

    monkeypatch.setattr(av, "open", refuse)
    for source, options in ((url, {"rtsp_transport": "tcp"}), ("/dev/video0", {"framerate": "30"})):
        with pytest.raises(InputError, match="cannot open the live source") as e:
            VideoSource(source, options=options)
        assert str(e.value).startswith(source + ": ")  # named as given
        assert seen[-1]["file"] == source and seen[-1]["options"] == options
    assert seen[-1]["format"] == "v4l2"


def test_paced_releases_frames_at_their_timestamps():
    now = [100.0]
    slept = []

    def sleep(s):
        slept.append(round(s, 6))
        now[0] += s

    frames = [(0.0, "a"), (0.04, "b"), (0.08, "c"), (None, "d")]
    out = list(paced(frames, fps=25, clock=lambda: now[0], sleep=sleep))
    assert [f for _, f in out] == ["a", "b", "c", "d"] and slept == [0.04, 0.04, 0.04]  # d: frame 3 / 25 fps


def test_a_full_live_queue_drops_its_oldest_frames():
    def producer(n):
        for k in range(n):
            yield SourceFrame(k / 100, time.perf_counter(), np.full((2, 2, 3), k % 256, np.uint8))

    feed = FrameFeed(producer(200), capacity=4, drop_oldest=True)
    time.sleep(0.3)  # the consumer is late: the reader has run through all 200
    got = []
    while not feed.finished:
        got += feed.take(3)
    seen = [int(f.image[0, 0, 0]) for f in got]
    assert feed.dropped == 200 - len(got) and len(got) == 4 and seen == [196, 197, 198, 199]  # the newest kept

    blocking = FrameFeed(producer(50), capacity=4, drop_oldest=False)
    time.sleep(0.1)
    got = []
    while not blocking.finished:
        got += blocking.take(7)
    assert blocking.dropped == 0 and [int(f.image[0, 0, 0]) for f in got] == list(range(50))


def test_a_reader_error_reaches_the_consumer():
    def broken():
        yield SourceFrame(0.0, 0.0, np.zeros((2, 2, 3), np.uint8))
        raise InputError("decoding failed after 1 frames", "cam.mp4")

    feed = FrameFeed(broken(), capacity=4, drop_oldest=False)
    assert len(feed.take(8, timeout=2)) == 1
    with pytest.raises(InputError, match="decoding failed"):
        for _ in range(50):
            feed.take(8, timeout=0.1)


def test_a_file_read_at_its_own_pace_is_scored_while_it_plays(tmp_path, predictor, encoder):
    fps, t = 25, 60
    path = make_video(tmp_path / "cam.mp4", t, 96, 64, fps=fps, seed=5)
    source = VideoSource(path, realtime=True)
    assert source.live and source.fps == fps
    buf = io.StringIO()
    written_at: list[float] = []
    names = predictor.class_names
    tracker = EventTracker(names, predictor.normal_id, 0.5, EventRules(0, 0), fps)
    session = StreamSession(StreamScorer(predictor, hop=16, encoder=encoder, encode_batch=8), tracker,
                            JsonlSink(buf, names), fps=fps, on_frames=lambda n: written_at.append(time.perf_counter()))
    feed = FrameFeed(source.frames(), capacity=64, drop_oldest=True)
    result = session.run(feed, stop=threading.Event())
    assert result.prediction.num_frames == t and result.dropped == 0 and result.reason == "end of source"
    assert result.wall_s >= (t - 1) / fps - 0.05  # it took the video's own duration
    # the first scores were out well before the last frame had even arrived
    last_arrival = written_at[-1] - result.latency[-1]  # its score's time minus its latency
    assert written_at[0] < last_arrival - 0.5
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    frames = [r for r in lines if r["type"] == "frame"]
    assert [r["frame"] for r in frames] == list(range(t))
    np.testing.assert_allclose([r["time_s"] for r in frames], np.arange(t) / fps, atol=1e-6)
    np.testing.assert_allclose([r["score"] for r in frames], result.prediction.scores, atol=1e-6)
    assert (result.latency >= 0).all()
    # the same events online as offline from the same scores
    events = [{k: v for k, v in r.items() if k != "type"} for r in lines if r["type"] == "event"]
    assert events == anomalous_spans(result.prediction, names, predictor.normal_id, fps, EventRules(0, 0), result.times)
    # and the frames match an independent decode
    pictures, _ = decode_all(path)
    assert len(pictures) == t


def test_a_source_failing_mid_stream_keeps_what_was_scored(predictor, encoder):
    def camera():
        for k in range(40):
            yield SourceFrame(k / 10, time.perf_counter(), np.full((48, 64, 3), 3 * k, np.uint8))
        raise InputError("decoding failed after 40 frames (corrupt video?)", "rtsp://cam/1")

    buf = io.StringIO()
    names = predictor.class_names
    tracker = EventTracker(names, predictor.normal_id, 0.5, EventRules(), 10)
    session = StreamSession(StreamScorer(predictor, hop=16, encoder=encoder), tracker, JsonlSink(buf, names), fps=10)
    result = session.run(FrameFeed(camera(), capacity=8, drop_oldest=False))
    assert result.reason == "source error" and "decoding failed" in str(result.error)
    assert result.prediction.num_frames == 40  # the 8 after the last hop were scored by the final flush
    records = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [r["frame"] for r in records if r["type"] == "frame"] == list(range(40))
