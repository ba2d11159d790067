import numpy as np
import pytest

from anomalyclip.assets import asset_path
from anomalyclip.data.formats import read_labels, read_temporal, read_video_list
from anomalyclip.data.sampling import frame_labels
from anomalyclip.errors import InputError


def test_shipped_label_tables():
    ucf = read_labels(asset_path("ucf_labels.csv"))
    assert ucf.num_classes == 14 and ucf.normal_id == 7 and ucf.names[0] == "Abuse" and ucf.names[-1] == "Vandalism"
    sht = read_labels(asset_path("sht_labels.csv"))
    assert sht.num_classes == 18 and sht.normal_id == 8 and "throwing object" in sht.names
    xd = read_labels(asset_path("xd_labels.csv"))
    assert xd.num_classes == 7 and xd.normal_id == 4


def test_video_list(tmp_path):
    p = tmp_path / "Anomaly_Test.txt"
    p.write_text("Abuse/Abuse028_x264 0 1411 0\n\nArrest/Arrest001_x264 0 2373 1\n")
    entries = read_video_list(p, read_labels(asset_path("ucf_labels.csv")))
    assert [(e.path, e.num_frames, e.label) for e in entries] == [("Abuse/Abuse028_x264", 1412, 0), ("Arrest/Arrest001_x264", 2374, 1)]
    assert entries[1].source == f"{p}:3"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("Abuse/Abuse028_x264 0 1411\n", ":1"),
        ("Abuse/Abuse028_x264 0 x 0\n", "'Abuse/Abuse028_x264 0 x 0'"),
        ("ok 0 10 0\nAbuse/Abuse028_x264 0 1411 14\n", ":2: label id 14 is not in the labels CSV"),
        ("", "empty"),
    ],
)
def test_video_list_errors_name_file_line_value(tmp_path, text, fragment):
    p = tmp_path / "list.txt"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        read_video_list(p, read_labels(asset_path("ucf_labels.csv")))
    assert str(p) in str(e.value) and fragment in str(e.value)


def test_temporal_ucf_and_xd_layouts(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(
        "Abuse028_x264.mp4  Abuse  165  240  -1  -1\n"
        "Arson011_x264.mp4 Arson 150 420 680 1267\n"
        "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
        "v=abc__#1_label_B1-0-0 51 210 273 410 500 520\n"
    )
    t = read_temporal(p)
    assert t["Abuse028_x264"] == [(165, 240)]
    assert t["Arson011_x264"] == [(150, 420), (680, 1267)]
    assert t["Normal_Videos_003_x264"] == []
    # XD-Violence: no class column, any number of pairs; the first start is not a class.
    assert t["v=abc__#1_label_B1-0-0"] == [(51, 210), (273, 410), (500, 520)]


def test_temporal_errors(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("ok.mp4 A 1 2\nbad.mp4 Abuse 10 20 30\n")
    with pytest.raises(InputError, match=r"t.txt:2: start/end frames must come in pairs"):
        read_temporal(p)


def test_labels_errors(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("id,name\n0,Abuse\n1,Fighting\n")
    with pytest.raises(InputError, match="Normal"):
        read_labels(p)
    p.write_text("idx,label\n0,Normal\n")
    with pytest.raises(InputError, match=r"labels.csv:1: expected the header"):
        read_labels(p)
    with pytest.raises(InputError, match="not found"):
        read_labels(tmp_path / "missing.csv")


def test_frame_labels_spans():
    # Two spans, inclusive, shifted by the list's start frame; -1 spans are dropped by the parser.
    lab = frame_labels(12, 5, [(2, 3), (8, 9)], normal_id=0, start_frame=1)
    expected = [5 if (2 <= i + 1 <= 3 or 8 <= i + 1 <= 9) else 0 for i in range(12)]
    assert lab.tolist() == expected
    assert frame_labels(5, 5, [], normal_id=7).tolist() == [7] * 5
    assert np.array_equal(frame_labels(4, 1, [(0, 100)], 0), np.ones(4, dtype=np.int64))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_load_features_reads_every_value(tmp_path, dtype):
    from anomalyclip.data.features import load_features

    x = np.random.default_rng(0).standard_normal((301, 24)).astype(dtype)
    np.save(tmp_path / "v.npy", x)
    got = load_features(tmp_path / "v.npy", 24)
    assert got.dtype == np.float32 and got.flags.writeable
    np.testing.assert_array_equal(got, x.astype(np.float32))
    np.save(tmp_path / "f.npy", np.asfortranarray(x))  # column-major files load too
    np.testing.assert_array_equal(load_features(tmp_path / "f.npy", 24), x.astype(np.float32))


def test_load_features_non_finite_and_overflowing_sums(tmp_path):
    from anomalyclip.data.features import load_features

    big = np.full((10, 8), 3e38, np.float32)  # finite, but the sum overflows: not an error
    np.save(tmp_path / "big.npy", big)
    np.testing.assert_array_equal(load_features(tmp_path / "big.npy"), big)
    x = np.zeros((10, 8), np.float32)
    x[7, 3] = -np.inf
    np.save(tmp_path / "inf.npy", x)
    with pytest.raises(InputError, match=r"row 7 holds a non-finite value \(-inf\)"):
        load_features(tmp_path / "inf.npy")
    np.save(tmp_path / "short.npy", np.zeros((10, 8), np.float32))
    data = (tmp_path / "short.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(data[:-40])
    with pytest.raises(InputError, match="short.npy"):
        load_features(tmp_path / "short.npy")
