"""CLIP weights in OpenAI's layout from the files users of the authors' code have: OpenAI's
`ViT-B-16.pt` (a TorchScript archive, or a plain state dict) and the authors' `last.ckpt`, which
holds the whole CLIP under `net.`. Read as data: a TorchScript archive's tensors are taken from
its pickle with an unpickler that builds tensors and plain objects only, so no code in the file
is run or compiled."""

from __future__ import annotations

import collections
import io
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from anomalyclip.checkpoint.safe_load import load_torch_file
from anomalyclip.errors import InputError

# The authors' names of CLIP's parts (`net.` removed) -> OpenAI's.
_AUTHORS_TO_OPENAI = (
    ("token_embedding.", "token_embedding."),
    ("text_encoder.", ""),
    ("image_encoder.", "visual."),
)
_SCRIPT_ALLOWED = {("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict")}
# TorchScript's list and type-tag builders: each hands back its first argument
_SCRIPT_IDENTITIES = {"build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "restore_type_tag"}


def _first(value, *_):
    return value


class _Attributes:
    """A TorchScript module's pickled state: its attribute dictionary, nothing more."""

    def __setstate__(self, state: dict) -> None:
        self.attributes = state


class _ScriptUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, where: Path):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.where = archive, prefix, where

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return _Attributes
        if module == "torch" and name.endswith("Storage") and name != "UntypedStorage":
            return getattr(torch, name)
        if module == "torch.jit._pickle" and name in _SCRIPT_IDENTITIES:
            return _first
        if (module, name) in _SCRIPT_ALLOWED:
            return torch._utils._rebuild_tensor_v2 if name == "_rebuild_tensor_v2" else collections.OrderedDict
        raise InputError(f"the TorchScript archive names {module}.{name}, which a CLIP weights file does not hold", self.where)

    def persistent_load(self, pid):
        _, storage_type, key, _, numel = pid
        with warnings.catch_warnings():  # typed storages, as torch's own loader builds them
            warnings.simplefilter("ignore", UserWarning)
            dtype = storage_type.dtype
            data = self.archive.read(f"{self.prefix}data/{key}")
            if len(data) != numel * dtype.itemsize:
                raise InputError(f"tensor record {key} holds {len(data)} bytes, its pickle says {numel} values", self.where)
            untyped = torch.UntypedStorage.from_buffer(data, dtype=torch.uint8)
            return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for name, value in getattr(obj, "attributes", {}).items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _Attributes):
            _tensors(value, f"{prefix}{name}.", out)


def is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())


def torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the scripted module, by dotted name (`visual.conv1.weight`)."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pickles:
            raise InputError("not a TorchScript archive of a model (no data.pkl)", path)
        prefix = pickles[0][: -len("data.pkl")]
        try:
            root = _ScriptUnpickler(archive.read(pickles[0]), archive, prefix, path).load()
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as e:
            raise InputError(f"not a readable TorchScript archive ({e})", path) from None
    out: dict[str, torch.Tensor] = {}
    _tensors(root, "", out)
    return out


def _authors_to_openai(sd: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in sd.items():
        key = str(key)[len("net.") :]
        for theirs, openai in _AUTHORS_TO_OPENAI:
            if key.startswith(theirs):
                out[openai + key[len(theirs) :]] = value
    return out


def read_openai_clip(path: str | Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """OpenAI-layout CLIP tensors (`token_embedding.weight`, `transformer.*`, `visual.*`, ...) of
    an OpenAI `.pt` or an authors' `last.ckpt`."""
    path = Path(path)
    if is_torchscript(path):
        return torchscript_tensors(path)
    obj = load_torch_file(path, trust)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        raise InputError("holds no CLIP weights (expected OpenAI's ViT-B-16.pt or an authors' last.ckpt)", path)
    if any(str(k).startswith("net.") for k in sd):
        sd = _authors_to_openai(sd)
    if "token_embedding.weight" not in sd and "visual.conv1.weight" not in sd:
        raise InputError("holds no CLIP weights (expected OpenAI's ViT-B-16.pt or an authors' last.ckpt)", path)
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
