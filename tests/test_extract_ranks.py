"""Extraction over several processes: the frame-balanced plan, the launcher's environment, and
whole runs under torchrun (CPU, gloo) compared with one process, including a rank killed outright
and the rerun that completes the set."""

from __future__ import annotations

import itertools
import os
import random
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import anomalyclip
from anomalyclip.errors import InputError
from anomalyclip.fileio import OutputSet
from anomalyclip.video import store
from anomalyclip.video.decode import read_frames
from anomalyclip.video.jobs import find_videos
from anomalyclip.video.runner import run_extract
from anomalyclip.video.shards import balanced_plan, header_frames, plan_extraction
from anomalyclip.video.world import World
from media import decode_all, make_video

SRC = Path(__file__).resolve().parents[1] / "src"
UCF_LABELS = Path(anomalyclip.__file__).parent / "assets" / "ucf_labels.csv"
# five videos whose plan over two ranks is worked out by hand (longest first, to the least loaded,
# ties to the lower rank): a 30 -> 0, b 24 -> 1, c 18 -> 1 (24 < 30), d 12 -> 0 (30 < 42),
# e 6 -> 0 (42 = 42): rank 0 gets a, d, e (48 frames), rank 1 gets b, c (42 frames); each
# rank takes its share in name order (rank 1: Arson/c, then Normal/b)
VIDEOS = {"Abuse/a": 30, "Normal/b": 24, "Arson/c": 18, "Abuse/d": 12, "Normal/e": 6}


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def loads(shares: list[list[str]], weights: dict[str, int]) -> list[int]:
    return [sum(weights[n] for n in share) for share in shares]


# ---------------------------------------------------------------------- the plan
def test_balanced_plan_by_hand():
    w = {"a": 7, "b": 5, "c": 4, "d": 3, "e": 1}
    # 2 ranks: a->0 (7), b->1 (5), c->1 (5 < 7: 9), d->0 (7 < 9: 10), e->1 (9 < 10: 10)
    assert balanced_plan(w, 2) == [["a", "d"], ["b", "c", "e"]]
    # 3 ranks: a->0, b->1, c->2, d->2 (4 is least), e->1 (5 < 7)
    assert balanced_plan(w, 3) == [["a"], ["b", "e"], ["c", "d"]]
    # equal weights go by name, ties between ranks to the lower rank
    assert balanced_plan({"z": 2, "x": 2, "w": 2, "y": 2}, 2) == [["w", "y"], ["x", "z"]]
    assert balanced_plan(w, 1) == [["a", "b", "c", "d", "e"]]
    assert balanced_plan({"a": 3}, 3) == [["a"], [], []]
    assert balanced_plan({}, 2) == [[], []]
    assert balanced_plan(dict(VIDEOS), 2) == [["Abuse/a", "Abuse/d", "Normal/e"], ["Normal/b", "Arson/c"]]
    with pytest.raises(ValueError):
        balanced_plan(w, 0)


def test_plan_ignores_input_order_and_is_balanced():
    rng = random.Random(0)
    for trial in range(200):
        ranks = rng.randint(1, 6)
        weights = {f"v{i:03d}": rng.choice([0, 1, 5, 50, 300, 2000]) + rng.randint(0, 40) for i in range(rng.randint(0, 40))}
        shares = balanced_plan(weights, ranks)
        assert sorted(n for s in shares for n in s) == sorted(weights)  # each video exactly once
        if weights:
            mean = sum(weights.values()) / ranks
            assert max(loads(shares, weights)) <= mean + max(weights.values()) + 1e-9
        items = list(weights.items())
        rng.shuffle(items)
        assert balanced_plan(dict(items), ranks) == shares


def test_plan_is_near_the_best_split():
    """Longest-first is within 4/3 - 1/(3m) of the best makespan (Graham); the best is found by
    trying every assignment."""
    rng = random.Random(1)
    for trial in range(40):
        ranks = rng.choice([2, 3])
        weights = {f"v{i}": rng.randint(1, 100) for i in range(rng.randint(1, 7))}
        best = min(
            max(sum(w for w, r in zip(weights.values(), assign) if r == k) for k in range(ranks))
            for assign in itertools.product(range(ranks), repeat=len(weights))
        )
        got = max(loads(balanced_plan(weights, ranks), weights))
        assert best <= got <= (4 / 3 - 1 / (3 * ranks)) * best + 1e-9


def test_header_frames(tmp_path):
    scan = tmp_path / "scan"
    mp4 = make_video(scan / "v.mp4", 30, 64, 48, fps=25)
    mkv = make_video(tmp_path / "other" / "v.mkv", 40, 64, 48, fps=20)
    frames = scan / "folder"
    frames.mkdir()
    for i in range(7):
        (frames / f"{i:06d}.jpg").write_bytes(b"")  # only listed, never read
    (scan / "bad.mp4").write_bytes(b"not a video at all")
    jobs = {j.rel: j for j in find_videos([scan])}
    assert header_frames(jobs["v"]) == len(decode_all(mp4)[0]) == 30  # the header's count
    mkv_job = find_videos([mkv])[0]
    assert abs(header_frames(mkv_job) - len(decode_all(mkv)[0])) <= 1  # no count in the header: duration x rate
    # at a target rate: 30 frames at 25 fps last 1.2 s, so 12 instants at 10 fps, as the decoder samples
    assert header_frames(jobs["v"], fps=10) == 12 == len(read_frames(mp4, fps=10)[0])
    assert header_frames(jobs["v"], fps=100) == 30  # never more than there are
    assert header_frames(jobs["folder"]) == 7
    assert header_frames(jobs["folder"], fps=5, frames_fps=10) == 4  # 0.7 s at 5 fps: instants 0, .2, .4, .6
    assert header_frames(jobs["bad"]) == 0  # the rank that gets it reports it


def _finish(job, out: Path, settings: dict, frames: int = 3) -> None:
    sidecar = {**settings, "num_frames": frames, "feature_shape": [frames, 4]}
    store.write_video(job, out, np.zeros((frames, 4), np.float32), sidecar)


def test_plan_skips_finished_videos_and_verifies_them(tmp_path):
    src = tmp_path / "in"
    for rel, n in VIDEOS.items():
        make_video(src / f"{rel}.mp4", n, 32, 32)
    jobs = find_videos([src])
    out = tmp_path / "out"
    settings = {"clip_model": "m", "clip_weights_sha256": "0" * 64, "target_fps": None, "preprocessing": {"method": "pil"}}
    by_rel = {j.rel: j for j in jobs}
    _finish(by_rel["Abuse/a"], out, settings)
    _finish(by_rel["Normal/b"], out, {**settings, "clip_weights_sha256": "1" * 64})  # another CLIP
    _finish(by_rel["Arson/c"], out, settings)
    np.save(out / "Arson" / "c.npy", np.zeros((2, 4), np.float32))  # not what its sidecar says: redo
    _finish(by_rel["Abuse/d"], out, settings)
    (out / "Abuse" / "d.json").unlink()  # died between the two files: redo
    plan = plan_extraction(jobs, out, settings, 2)
    assert plan.skipped == 1
    assert [name for name, _ in plan.conflicts] == ["Normal/b.mp4"]
    assert "different CLIP model" in plan.conflicts[0][1]
    # c 18 -> 0, d 12 -> 1, e 6 -> 1
    assert plan.shares == [["Arson/c"], ["Abuse/d", "Normal/e"]] and plan.frames == [18, 18]
    assert plan.digest() == plan_extraction(list(reversed(jobs)), out, settings, 2).digest()
    assert plan.digest() != plan_extraction(jobs, out, settings, 3).digest()


def test_world_from_env():
    assert World.from_env({}) is None
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    w = World.from_env(env)
    assert w == World(5, 8, 1, 4)
    assert World.from_env(w.launch_env("10.0.0.1", 29400)) == w
    assert w.launch_env("10.0.0.1", 29400)["MASTER_PORT"] == "29400"
    assert World.from_env({"RANK": "0", "WORLD_SIZE": "1"}) == World()
    assert str(w.device("cpu")) == "cpu"
    for bad in ({**env, "RANK": "8"}, {**env, "LOCAL_RANK": "x"}, {**env, "LOCAL_WORLD_SIZE": "9"}):
        with pytest.raises(InputError):
            World.from_env(bad)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="local rank 1"):
            w.device("cuda")


# ---------------------------------------------------------------------- whole runs under torchrun
@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("ranks") / "in"
    for i, (rel, n) in enumerate(VIDEOS.items()):
        make_video(src / f"{rel}.mp4", n, 64, 48, seed=i)
    return src


@pytest.fixture(scope="module")
def single(videos, clip_dir, tmp_path_factory) -> Path:
    """The reference: one process, one thread (as each rank of two has on two cores)."""
    out = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_extract([videos], out, clip=clip_dir, device="cpu", labels=UCF_LABELS) == 0
    finally:
        torch.set_num_threads(threads)
    return out


TORCHRUN_ENV = {
    **os.environ,
    "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "PYTHONWARNINGS": "ignore",
}


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(cmd, cwd=cwd, env=TORCHRUN_ENV, capture_output=True, text=True, timeout=240)


def two_nodes(node_args: list[list[str]], cwd: Path) -> list[tuple[int, str]]:
    """Two torchrun "nodes" of one process each on this machine, as on two machines: (status, stderr)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logs = [cwd / f"node{rank}.err" for rank in range(len(node_args))]
    procs = []
    for rank, args in enumerate(node_args):
        with open(logs[rank], "w") as err:  # a file, not a pipe, so that neither node can block on it
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank),
                 "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
                 "-m", "anomalyclip", *args],
                cwd=cwd, env=TORCHRUN_ENV, stdout=subprocess.DEVNULL, stderr=err,
            ))
    return [(p.wait(timeout=240), log.read_text()) for p, log in zip(procs, logs)]


def extract_args(videos: Path, out: Path, clip_dir: Path) -> list[str]:
    return ["extract", "--videos", str(videos), "--out", str(out), "--clip", str(clip_dir), "--device", "cpu",
            "--labels", str(UCF_LABELS)]


def bar_total(err: str, rank: int) -> int:
    """The number of videos rank `rank`'s progress bar counted to."""
    done = re.findall(rf"extract\[{rank}\]:.*?(\d+)/(\d+) \[", err)
    return max(int(n) for n, total in done if n == total)


def test_torchrun_two_ranks_equal_one_process(tmp_path, videos, clip_dir, single):
    out = tmp_path / "out"
    res = torchrun("-m", "anomalyclip", *extract_args(videos, out, clip_dir), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "5 video(s) to extract over 2 processes, 42-48 frames each" in res.stderr
    assert bar_total(res.stderr, 0) == 3 and bar_total(res.stderr, 1) == 2  # the plan above
    assert files_under(out) == files_under(single)
    for p in single.rglob("*.npy"):
        a, b = np.load(out / p.relative_to(single)), np.load(p)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-6
    for name in [store.NORMAL_LIST, store.ABNORMAL_LIST]:
        assert (out / name).read_text() == (single / name).read_text()
    assert "Normal/b 0 23 " in (out / store.NORMAL_LIST).read_text()  # 24 frames: 0..23


def test_a_killed_rank_then_a_rerun_completes_the_set(tmp_path, videos, clip_dir, single):
    """Rank 1 dies by SIGKILL right after writing its first video (Arson/c); torchrun stops rank
    0. The rerun extracts what is missing and leaves the finished files untouched."""
    script = tmp_path / "dies.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys
        from anomalyclip.cli import main
        from anomalyclip.video import store

        if os.environ["RANK"] == "1":
            write = store.write_video

            def write_then_die(*args, **kwargs):
                write(*args, **kwargs)
                os.kill(os.getpid(), signal.SIGKILL)

            store.write_video = write_then_die
        sys.exit(main(sys.argv[1:]))
    """))
    out = tmp_path / "out"
    first = torchrun(str(script), *extract_args(videos, out, clip_dir), cwd=tmp_path)
    assert first.returncode != 0
    written = {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    assert "Arson/c.npy" in written and "Normal/b.npy" not in written, first.stderr[-3000:]
    assert not (out / store.NORMAL_LIST).exists()  # lists only once every rank is done
    assert {p for p in files_under(out) if not p.startswith(".staging-")} <= files_under(single)

    again = torchrun("-m", "anomalyclip", *extract_args(videos, out, clip_dir), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    n = len(written)
    assert f"extracted {5 - n} video(s), skipped {n} already extracted, 0 failed" in again.stderr
    assert {name: (out / name).stat().st_mtime_ns for name in written} == written
    assert files_under(out) == files_under(single)  # nothing staged is left behind either
    for p in single.rglob("*.npy"):
        assert np.abs(np.load(out / p.relative_to(single)) - np.load(p)).max() <= 1e-6
    for name in [store.NORMAL_LIST, store.ABNORMAL_LIST]:
        assert (out / name).read_text() == (single / name).read_text()


def test_two_nodes_equal_one_process(tmp_path, videos, clip_dir, single):
    """Node 1's only process has LOCAL_RANK 0 and RANK 1: it takes rank 1's share."""
    out = tmp_path / "out"
    (rc0, err0), (rc1, err1) = two_nodes([extract_args(videos, out, clip_dir)] * 2, tmp_path)
    assert rc0 == 0 and rc1 == 0, (err0[-2000:], err1[-2000:])
    assert bar_total(err0, 0) == 3 and bar_total(err1, 1) == 2
    assert "frames each" in err0 and "frames each" not in err1  # rank 0 alone prints the plan and the summary
    assert files_under(out) == files_under(single)
    for p in single.rglob("*.npy"):
        assert np.abs(np.load(out / p.relative_to(single)) - np.load(p)).max() <= 1e-6


def test_nodes_that_see_different_videos_stop_before_writing(tmp_path, videos, clip_dir):
    out = tmp_path / "out"
    node0 = extract_args(videos, out, clip_dir)
    node1 = extract_args(videos / "Abuse", out, clip_dir)
    for (rc, err) in two_nodes([node0, node1], tmp_path):
        assert rc != 0
        assert "error: the processes do not see the same videos and outputs" in err, err[-2000:]
    assert not out.exists() or not any(out.rglob("*.npy"))


def test_stale_staging_is_removed_on_rerun(tmp_path, clip_dir):
    src = tmp_path / "in"
    make_video(src / "v.mp4", 4, 32, 32)
    out = tmp_path / "out"
    files = OutputSet(out).__enter__()  # a writer killed before it could clean up
    np.save(files.path("v.npy"), np.zeros((4, 512), np.float32))
    assert files.root.exists()
    assert run_extract([src], out, clip=clip_dir, device="cpu") == 0
    assert files_under(out) == {"v.npy", "v.json"}


def test_devices_under_torchrun_is_refused(tmp_path, videos, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="--nproc-per-node"):
        run_extract([videos], tmp_path / "out", clip="unused", device="cpu", devices=2)
