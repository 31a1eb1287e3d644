"""Reading and writing the files a user names: one place that refuses what cannot be read.

Every input file of the CLI (trace, TOML config, instance JSON, knapsack file) is read through
`read_text`: UTF-8 with or without a byte-order mark, gzip'd files decompressed transparently
(public traces ship as .csv.gz / .jsonl.gz), and anything else (UTF-16, a binary file, a
directory) a one-line `InputError` naming the file and saying what to change. Outputs go
through `output_dir` (refuses an existing file) and `safe_name` (a name that becomes a path
stays one component, so results never land outside the output folder).
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import re
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from experiments.errors import ConfigError
from formulations.instance import Instance
from formulations.requests import ValidationError

GZIP_MAGIC = b"\x1f\x8b"
WIDE_BOMS = {codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32",
             codecs.BOM_UTF16_LE: "UTF-16", codecs.BOM_UTF16_BE: "UTF-16"}
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class InputError(ConfigError):
    """A file the CLI cannot read as text (missing, a directory, binary, a wrong encoding)."""


def read_text(path: str | Path, what: str) -> str:
    """The text of `path` (`what` names the kind of file in errors, e.g. "trace")."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a directory; give a file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} {str(path)!r} not found") from None
    except OSError as err:
        raise InputError(f"{what} {str(path)!r} cannot be read ({err.strerror})") from None
    if data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise InputError(f"{what} {path}: damaged gzip file ({err})") from None
    return decode_text(data, f"{what} {path}")


def decode_text(data: bytes, where: str) -> str:
    """UTF-8 text (a leading BOM dropped); wide encodings and binary data are errors."""
    for bom, name in WIDE_BOMS.items():
        if data.startswith(bom):
            raise InputError(f"{where}: {name} text; save it as UTF-8 (e.g. iconv -f {name} -t UTF-8)")
    if b"\x00" in data[:4096]:
        raise InputError(f"{where}: binary data (a NUL byte), not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(f"{where}: line {line}: byte 0x{data[err.start]:02x} is not UTF-8; "
                         "save the file as UTF-8") from None


def parse_json(text: str, where: str, error: type[ValidationError] = InputError) -> Any:
    """JSON text as Python data; a repeated key or NaN/Infinity is an error (the first would be
    silently overwritten, the second is not JSON)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        repeated = next((k for k in keys if keys.count(k) > 1), None)
        if repeated is not None:
            raise error(f"{where}: key {repeated!r} appears {keys.count(repeated)} times in one object")
        return dict(items)

    def constant(name: str) -> float:
        raise error(f"{where}: {name} is not a JSON number")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as err:
        at = f"column {err.colno}" if "\n" not in text.rstrip("\n") else f"line {err.lineno} column {err.colno}"
        raise error(f"{where}: not valid JSON ({err.msg} at {at})") from None


def load_instance(path: str | Path) -> Instance:
    """An instance JSON file (formulations.instance) read through the checks above; errors name
    the file."""
    data = parse_json(read_text(path, "instance"), f"instance {path}")
    try:
        return Instance.from_dict(data)
    except ValidationError as err:
        raise InputError(f"instance {path}: {str(err).removeprefix('instance: ')}") from None


def output_dir(path: str | Path, flag: str = "--out") -> Path:
    """`path` as an output directory: an existing file (or one on the way) is an error. Created
    by whoever writes the first result, so that a run failing on its input leaves nothing."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                under = "" if part == path else f": {str(part)!r}"
                raise InputError(f"{flag} {str(path)!r}{under} is an existing file; give a directory")
            break
    return path


def safe_name(name: str, where: str) -> str:
    """`name` if it can be one path component (letters, digits, '.', '_', '-'; no leading '.')."""
    if not SAFE_NAME.fullmatch(name):
        raise ConfigError(f"{where} = {name!r}: use letters, digits, '.', '_' and '-' only (it names the "
                          "output folder under results/)")
    return name


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """A file handle (text, or binary with mode "wb") whose content appears at `path` only when the
    block ends without an error (temp file in the same folder, fsync, rename): a reader sees the
    whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, text: str) -> None:
    with atomic_file(path) as fh:
        fh.write(text)
