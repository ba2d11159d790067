"""Reading a torch checkpoint file without trusting what it declares.

A checkpoint comes from somewhere else, so every size in it is checked before it is used: a zip
bomb or a forged legacy header is refused before anything is allocated, and a file that is
merely broken is never mistaken for one that needs `--trust-checkpoint`. Every refusal is one
`InputError` line naming the file. Loaded with `weights_only=True` unless the user trusts it.
"""

from __future__ import annotations

import _compat_pickle
import os
import pickle
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from anomalyclip.checkpoint.validate import show_value
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
            raise _Unreadable(f"unexpected persistent id {show_value(pid)}")
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
