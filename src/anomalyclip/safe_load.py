"""Reading checkpoints and exported folders without trusting what they declare.

A checkpoint or an exported `config.json` comes from somewhere else, so every size, type and
count in it is checked before it is used: a zip bomb or a forged legacy header is refused before
anything is allocated, a file that is merely broken is never mistaken for one that needs
`--trust-checkpoint`, non-finite weights are refused, and an export's configuration must agree
with itself and with its weights. Every refusal is one `InputError` line naming the file.

Plain functions on plain data: nothing here imports the model package.
"""

from __future__ import annotations

import _compat_pickle
import json
import os
import pickle
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from anomalyclip.errors import InputError

# ------------------------------------------------------------------------------------------
# Zip-bomb bound
# ------------------------------------------------------------------------------------------
# torch.save *stores* its entries, so a genuine checkpoint inflates to at most its own size.
# Torch also reads deflated entries, and an archive re-zipped by another tool is legitimate: float
# weights barely deflate (about 1.1x) while zero-filled buffers (Adam moments at step 0, unused
# rows) deflate about 1000x, so 4x still admits a file that is three-quarters zeros. A bomb needs
# ratios in the hundreds (deflate tops out near 1030:1), and 4x caps the damage at "a checkpoint
# four times larger". The margin lets tiny files (a centroid, a test model) hold small zero
# tensors; 64 MiB is nothing next to the text tower any real model loads.
MAX_INFLATION = 4
INFLATION_MARGIN = 64 * 2**20

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # what torch's pre-zip format pickles first
_LEGACY_PROTOCOL = 1001
_TRUST_ADVICE = "if you trust its source, pass --trust-checkpoint to load it fully"

# Bytes per element of torch's legacy storage classes (by class name, any module).
_STORAGE_ITEM_SIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
    "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1,
    "BoolStorage": 1, "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8,
    "QInt8Storage": 1, "QUInt8Storage": 1, "QInt32Storage": 4, "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1, "UntypedStorage": 1,
}  # fmt: skip
_UNKNOWN_ITEM_SIZE = 16  # the widest dtype: an unknown storage class is never under-counted


class _Unreadable(Exception):
    """Internal: the file is not a checkpoint at all (the reason is the message)."""


# ------------------------------------------------------------------------------------------
# load_torch_file
# ------------------------------------------------------------------------------------------
def load_torch_file(path: str | Path, trust: bool = False) -> Any:
    """`torch.load` on CPU, `weights_only` unless `trust`, after checking declared sizes.

    Only an intact file whose pickle is valid and names globals a safe load refuses is told
    about `--trust-checkpoint`; anything broken is "not a readable checkpoint".
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        f = open(path, "rb")  # one open file: the checks and the load see the same bytes
    except OSError as e:
        raise InputError(f"cannot open checkpoint: {e.strerror or e}", path) from None
    with f:
        size = os.fstat(f.fileno()).st_size
        try:
            legacy_scan = _check_declared_sizes(f, size, path)  # None for a zip archive
        except _Unreadable as e:
            raise InputError(f"not a readable checkpoint ({e})", path) from None
        f.seek(0)
        try:
            return torch.load(f, map_location="cpu", weights_only=not trust)
        except Exception as e:  # anything torch raises here comes from the file's contents
            failure = e
        # Diagnose from the file itself: torch's wording offers the unsafe load even for garbage.
        try:
            scan = legacy_scan if legacy_scan is not None else _scan_zip_pickle(f)
        except _Unreadable as e:
            raise InputError(f"not a readable checkpoint ({e})", path) from None
    if trust:
        raise InputError(f"cannot load this checkpoint even with --trust-checkpoint ({_error_line(failure)})", path)
    refused = scan.refused() if isinstance(failure, pickle.UnpicklingError) else []
    if refused:
        shown = ", ".join(refused[:3]) + (f" and {len(refused) - 3} more" if len(refused) > 3 else "")
        raise InputError(
            f"this checkpoint holds pickled Python objects that a safe load refuses ({shown}); {_TRUST_ADVICE}",
            path,
        )
    if isinstance(failure, pickle.UnpicklingError):
        # A valid, intact pickle naming only allowed globals that torch still refused (e.g. protocol
        # 4 opcodes): not broken, yet nothing shows that trusting it is what it needs.
        raise InputError(f"not a readable checkpoint for a safe load ({_torch_reason(failure)})", path)
    raise InputError(f"not a readable checkpoint ({_error_line(failure)})", path)


def _check_declared_sizes(f: BinaryIO, size: int, path: Path) -> "_Scan | None":
    """Refuse what would inflate or allocate far beyond the file, before torch reads it.

    Torch picks its reader by the first four bytes, so this does too. A legacy file is fully
    scanned here (its sizes live in its pickle); the scan is returned for the diagnosis.
    """
    head = f.read(4)
    f.seek(0)
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(f) as zf:  # reads the central directory only
                declared = sum(info.file_size for info in zf.infolist())
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
            raise _Unreadable(f"damaged or truncated zip archive: {_error_line(e)}") from None
        bound = MAX_INFLATION * size + INFLATION_MARGIN
        if declared > bound:
            raise InputError(
                f"refusing to inflate this archive: it declares {declared} bytes uncompressed in a "
                f"{size}-byte file (the limit is {MAX_INFLATION}x the file size + "
                f"{INFLATION_MARGIN // 2**20} MiB); it may be a zip bomb",
                path,
            )
        return None
    return _scan_legacy(f, size)


def _scan_legacy(f: BinaryIO, size: int) -> "_Scan":
    """Walk torch's pre-zip format (five pickles, then raw storages) without allocating any.

    Its storage sizes come from the pickle and torch allocates them before reading the data, so
    garbage or a forged header could ask for any amount: the declared bytes must fit in the file.
    """
    if _is_tar(f):
        raise _Unreadable("torch's pre-0.4 tar format is not supported; re-save it with a current torch")
    scan = _Scan()
    try:
        magic = scan.load(f)
    except Exception:  # not even one pickle at the start
        magic = None
    if magic != _LEGACY_MAGIC:
        raise _Unreadable("neither a zip archive nor PyTorch's legacy format")
    try:
        if scan.load(f) != _LEGACY_PROTOCOL:
            raise _Unreadable("unknown version of PyTorch's legacy format")
        scan.load(f)  # system info
        scan.load(f, record_storages=True)
        keys = scan.load(f)
    except _Unreadable:
        raise
    except Exception as e:  # any failure of a stub-only unpickle means a broken stream
        raise _Unreadable(f"its pickle is damaged or truncated: {_error_line(e)}") from None
    declared = sum(scan.declared_bytes(key) for key in scan.storages)
    if declared > size:
        raise _Unreadable(f"its pickle declares {declared} bytes of tensors but the file has {size} bytes")
    if not isinstance(keys, list) or not all(isinstance(k, str) and k in scan.storages for k in keys):
        raise _Unreadable("its list of storages does not match its pickle")
    pos = f.tell()
    for key in keys:  # each storage: an 8-byte element count, then its bytes
        pos += 8 + scan.declared_bytes(key)
        if pos > size:
            raise _Unreadable(f"it is truncated: storage {key} runs past the end of the {size}-byte file")
    return scan


def _is_tar(f: BinaryIO) -> bool:
    try:
        with tarfile.open(fileobj=f, mode="r:"):
            return True
    except Exception:  # whatever tarfile makes of a non-tar header
        return False
    finally:
        f.seek(0)


def _scan_zip_pickle(f: BinaryIO) -> "_Scan":
    """Check that an archive is intact (every CRC) and its data.pkl a complete, valid pickle.

    Only called once a safe load has failed, to decide between "needs trust" and "broken";
    torch itself skips the CRCs, so a damaged file would otherwise load or ask for trust.
    """
    f.seek(0)
    try:
        with zipfile.ZipFile(f) as zf:
            names = zf.namelist()
            prefix = names[0].split("/", 1)[0] if names else ""
            pkl = f"{prefix}/data.pkl"
            if pkl not in names:
                raise _Unreadable("the archive has no data.pkl")
            bad = zf.testzip()
            if bad is not None:
                raise _Unreadable(f"damaged zip archive: entry {bad} fails its CRC check")
            sizes = {info.filename: info.file_size for info in zf.infolist()}
            scan = _Scan()
            with zf.open(pkl) as stream:
                try:
                    scan.load(stream, record_storages=True)
                except Exception as e:  # any failure of a stub-only unpickle means a broken stream
                    raise _Unreadable(f"its data.pkl is damaged or truncated: {_error_line(e)}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise _Unreadable(f"damaged zip archive: {_error_line(e)}") from None
    for key, (numel, item) in scan.storages.items():
        record = f"{prefix}/data/{key}"
        if record not in sizes:
            raise _Unreadable(f"damaged zip archive: tensor record {record} is missing")
        nbytes = numel * (item or 0)
        if item is not None and sizes[record] != nbytes:
            raise _Unreadable(f"damaged zip archive: {record} holds {sizes[record]} bytes, its pickle says {nbytes}")
    return scan


class _Stub:
    """Stands in for every object a pickle names: accepts any construction, call or state."""

    _global_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Stub":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "_Stub":
        return _Stub()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass


class _Scan:
    """Unpickles with stubs in place of globals and tensors: runs no code, imports nothing, and
    allocates no more than the pickle's own size; records every global and storage named."""

    def __init__(self) -> None:
        self.globals: set[str] = set()
        self.storages: dict[str, tuple[int, int | None]] = {}  # key -> (numel, bytes per item)
        self.modules = 0  # legacy whole-module pickles (persistent id "module")
        self._classes: dict[str, type] = {}

    def load(self, f: BinaryIO, record_storages: bool = False) -> Any:
        scan = self

        class Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                full = _python3_name(module, name)
                scan.globals.add(full)
                if full not in scan._classes:
                    scan._classes[full] = type("_Stub", (_Stub,), {"_global_name": full})
                return scan._classes[full]

            def persistent_load(self, pid: Any) -> Any:
                if record_storages:
                    scan._record(pid)
                return _Stub()

        return Unpickler(f, encoding="utf-8").load()

    def _record(self, pid: Any) -> None:
        kind = pid[0] if isinstance(pid, tuple) and pid else None
        kind = kind.decode("ascii", "replace") if isinstance(kind, bytes) else kind
        if kind == "module":
            self.modules += 1
            return
        # zip: (storage, type, key, location, numel); legacy adds view metadata
        if kind != "storage" or len(pid) not in (5, 6) or not isinstance(pid[4], int) or pid[4] < 0:
            raise _Unreadable(f"unexpected persistent id {_show(pid)}")
        storage_type, key = pid[1], pid[2]
        key = key.decode("ascii", "replace") if isinstance(key, bytes) else str(key)
        self.storages[key] = (pid[4], _item_size(getattr(storage_type, "_global_name", "")))

    def declared_bytes(self, key: str) -> int:
        """A storage's size; an unknown storage class counts as the widest dtype."""
        numel, item = self.storages[key]
        return numel * (item or _UNKNOWN_ITEM_SIZE)

    def refused(self) -> list[str]:
        """The globals a `weights_only` load refuses, sorted; a legacy module pickle counts."""
        allowed = _torch_allowed_globals()
        out = sorted(g for g in self.globals if not allowed(g))
        return out + ["a pickled nn.Module"] * bool(self.modules)


def _item_size(storage_class: str) -> int | None:
    """Bytes per element of a storage class named in a pickle (`torch.FloatStorage`), if known."""
    name = storage_class.rsplit(".", 1)[-1]
    if name == "UntypedStorage":
        return 1
    try:
        return torch.empty((), dtype=torch.serialization.StorageType(name).dtype).element_size()
    except Exception:  # not a storage class torch knows (or that API moved): the fixed table
        return _STORAGE_ITEM_SIZE.get(name)


def _python3_name(module: str, name: str) -> str:
    """The name torch's safe unpickler checks: Python 2 names mapped as pickle maps them."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _torch_allowed_globals():
    """A predicate for the globals torch's `weights_only` load accepts.

    Read from torch's own tables (private, so guarded); without them, torch's own names and the
    few builtins it has long allowed.
    """
    try:
        from torch import _weights_only_unpickler as wo

        names = set(wo._get_allowed_globals()) | set(wo._get_user_allowed_globals())
        return names.__contains__
    except Exception:
        basics = {"collections.OrderedDict", "collections.Counter", "_codecs.encode", "builtins.set",
                  "builtins.bytearray", "builtins.complex"}  # fmt: skip
        return lambda g: g in basics or g.startswith("torch.")


# ------------------------------------------------------------------------------------------
# check_finite
# ------------------------------------------------------------------------------------------
_CHUNK = 1 << 22  # elements per slice when counting bad values (4 MB of booleans at most)


def check_finite(state_dict: dict[str, Any], path: str | Path) -> None:
    """Refuse NaN or infinite values in any floating tensor, naming the first such key.

    One reduction per tensor and no temporaries: a tensor's sum is finite only if every value
    is (the converse fails only when the sum overflows, which the exact count then settles).
    """
    for key, t in state_dict.items():
        if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()):
            continue
        if t.is_meta or t.numel() == 0:
            continue
        if t.layout == torch.sparse_coo:
            t = t._values()
        elif t.layout != torch.strided:
            continue
        if t.element_size() > 1 and bool(torch.isfinite(t.sum())):  # CPU cannot sum float8
            continue
        nan, inf = _count_non_finite(t)
        if nan or inf:
            raise InputError(
                f"tensor {_show_key(key)} has {nan} NaN and {inf} infinite values out of {t.numel()}; "
                "refusing non-finite weights",
                path,
            )


def _count_non_finite(t: torch.Tensor) -> tuple[int, int]:
    flat = t.contiguous().view(-1)
    nan = inf = 0
    for part in flat.split(_CHUNK):
        part = part.half() if part.element_size() == 1 else part  # float8: count in float16
        nan += int(torch.isnan(part).sum())
        inf += int(torch.isinf(part).sum())
    return nan, inf


# ------------------------------------------------------------------------------------------
# validate_export_config
# ------------------------------------------------------------------------------------------
# What `checkpoint.model_meta` writes, plus the `source` that `export.save_export` adds. Any
# change to either must come with a new format version here (tests tie the two together).
EXPORT_FORMAT_VERSIONS = (1,)
EXPORT_REQUIRED_KEYS = ("format_version", "model_config", "text_config", "class_names", "normal_id", "threshold")
EXPORT_OPTIONAL_KEYS = ("source",)
_CTX_KEY = "prompt_learner.ctx"
_BN_KEY = "selector.bn.running_mean"


def validate_export_config(meta: Any, path: str | Path, state_dict: dict[str, Any] | None = None) -> None:
    """Check an exported folder's `config.json` (and, if given, that its weights agree).

    Unknown keys are refused, not warned about: only our own `save_export` writes this file,
    and the loader uses every key it writes, so an unknown key is either a hand-edit typo
    (`"treshold": 0.3` would be silently ignored while the user believes it applies) or a newer
    writer, which must bump `format_version` for anything added, and gets the clearer refusal.
    """
    if not isinstance(meta, dict):
        raise InputError(f"config.json must hold a JSON object, not {_show(meta)}", path)
    known = EXPORT_REQUIRED_KEYS + EXPORT_OPTIONAL_KEYS
    for key in meta:
        if key not in known:
            raise InputError(
                f"unknown key {_show(key)} (value {_show(meta[key])}) in an export configuration; "
                f"its keys are {', '.join(known)}",
                path,
            )
    for key in EXPORT_REQUIRED_KEYS:
        if key not in meta:
            raise InputError(f"missing key {_show(key)} in an export configuration", path)

    version = meta["format_version"]
    if not _is_int(version) or version not in EXPORT_FORMAT_VERSIONS:
        supported = ", ".join(map(str, EXPORT_FORMAT_VERSIONS))
        raise InputError(f"format_version {_show(version)} is not supported (this version reads {supported})", path)
    for key in ("model_config", "text_config"):
        if not isinstance(meta[key], dict):
            raise InputError(f"{key} must be a JSON object, not {_show(meta[key])}", path)
    if "source" in meta and not isinstance(meta["source"], str):
        raise InputError(f"source must be a string, not {_show(meta['source'])}", path)

    names = _check_class_names(meta["class_names"], "class_names", path)
    count = len(names)
    normal_id = meta["normal_id"]
    if not _is_int(normal_id):
        raise InputError(f"normal_id must be an integer, not {_show(normal_id)}", path)
    if not 0 <= normal_id < count:
        raise InputError(f"normal_id {normal_id} is out of range for {count} classes (0..{count - 1})", path)
    if names[normal_id].lower() != "normal":
        where = [i for i, n in enumerate(names) if n.lower() == "normal"]
        hint = f" ({_show(names[where[0]])} is class {where[0]})" if where else " (no class is named Normal)"
        raise InputError(f"normal_id {normal_id} names class {_show(names[normal_id])}, not the Normal class{hint}", path)

    model_cfg = meta["model_config"]
    if "class_names" not in model_cfg or "normal_id" not in model_cfg:
        raise InputError("model_config must hold class_names and normal_id", path)
    cfg_names = _check_class_names(model_cfg["class_names"], "model_config.class_names", path)
    if len(cfg_names) != count:
        raise InputError(
            f"model_config.class_names has {len(cfg_names)} classes but class_names has {count}: "
            f"{_show(cfg_names)} vs {_show(names)}",
            path,
        )
    for i, (a, b) in enumerate(zip(cfg_names, names)):
        if a != b:
            raise InputError(f"model_config.class_names[{i}] {_show(a)} differs from class_names[{i}] {_show(b)}", path)
    if not _is_int(model_cfg["normal_id"]) or model_cfg["normal_id"] != normal_id:
        raise InputError(f"model_config.normal_id {_show(model_cfg['normal_id'])} differs from normal_id {normal_id}", path)

    threshold = meta["threshold"]
    number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
    if threshold is not None and not (number and 0 <= threshold <= 1):  # NaN fails the comparison too
        raise InputError(f"threshold must be null or a number in [0, 1], not {_show(threshold)}", path)

    if state_dict is not None:
        _check_weights_class_count(state_dict, count, path)


def _check_class_names(value: Any, key: str, path: str | Path) -> list[str]:
    """A list of at least two distinct non-empty names (one normal, one anomaly or more)."""
    if not isinstance(value, list) or len(value) < 2:
        raise InputError(f"{key} must be a list of at least 2 class names, not {_show(value)}", path)
    seen: dict[str, int] = {}
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{key}[{i}] must be a non-empty string, not {_show(name)}", path)
        if name.lower() in seen:
            raise InputError(f"{key}[{i}] {_show(name)} repeats {key}[{seen[name.lower()]}]", path)
        seen[name.lower()] = i
    return value


def _check_weights_class_count(sd: dict[str, Any], count: int, path: str | Path) -> None:
    """The prompt context has one row per class; the selector's statistics one per anomaly class."""
    for key, want, what in ((_CTX_KEY, count, "rows"), (_BN_KEY, count - 1, "entries")):
        t = sd.get(key)
        shape = getattr(t, "shape", None)
        if shape is None or len(shape) == 0:
            raise InputError(f"the weights have no {key} tensor, so their class count cannot be checked", path)
        if shape[0] != want:
            raise InputError(
                f"class_names has {count} classes but the weights' {key} has {shape[0]} {what} (expected {want})", path
            )


# ------------------------------------------------------------------------------------------
# One-line rendering of untrusted values
# ------------------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: Any, limit: int = 80) -> str:
    """A value as one short line: JSON escapes newlines and control characters."""
    try:
        text = json.dumps(value, ensure_ascii=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_key(key: Any) -> str:
    return key if isinstance(key, str) and key.isprintable() and len(key) <= 200 else _show(key, 200)


def _error_line(e: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception, shortened (torch's messages run to paragraphs)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    if len(text) > limit and ". " in text[20:]:  # torch appends paragraphs of advice: keep the first sentence
        text = text[: text.index(". ", 20) + 1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _torch_reason(e: BaseException) -> str:
    """The specific reason inside torch's long "Weights only load failed" message."""
    m = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
    return _error_line(m.group(1)) if m else _error_line(e)
