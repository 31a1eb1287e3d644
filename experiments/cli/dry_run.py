"""`slosched run --dry-run`: the config a run would use, as TOML, saying where each value came from.

A run mixes three sources: the config file (or the demo config when none is given), the code's
defaults for what the file leaves out, and the command line. The printed TOML loads back as a
config; a comment marks every value the command line set and every default the file left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.container import Container
from tomlkit.items import Table

from experiments.config import ExperimentConfig, load_config, read_toml

MISSING = object()


def resolved_toml(path: str | Path, config: ExperimentConfig, given: bool) -> str:
    """`config` (after the command line) as TOML; `path` is the file it started from, `given`
    whether the user named it (else it is the demo config, inherited as a whole)."""
    path = Path(path)
    document = tomlkit.document()
    source = f"{path}" if given else f"the demo config {path.name} ({path}), since no config was given"
    document.add(tomlkit.comment(f"resolved config; unmarked values come from {source}"))
    document.add(tomlkit.comment("'# command line': set by an option; '# default': not in the file"))
    _fill(document, config.to_dict(), load_config(path).to_dict(), read_toml(path))
    return tomlkit.dumps(document)


def _fill(container: Container | Table, data: dict[str, Any], base: Any, raw: Any) -> None:
    """Add `data` to `container`, scalars before tables (as TOML requires), each leaf marked
    against `base` (the file's config before the command line) and `raw` (the file's own keys);
    a value of the file the command line removed is shown as a comment."""
    base = base if isinstance(base, dict) else {}
    raw = raw if isinstance(raw, dict) else {}
    for key, value in data.items():
        if not isinstance(value, dict):
            item = tomlkit.item(value)
            if value != base.get(key, MISSING):
                item.comment("command line")
            elif key not in raw:
                item.comment("default")
            container.add(key, item)
    for key in base.keys() - data.keys():
        container.add(tomlkit.comment(f"{key} = {tomlkit.item(base[key]).as_string()} in the file: "
                                      "removed by the command line"))
    for key, value in data.items():
        if isinstance(value, dict):
            table = tomlkit.table()
            _fill(table, value, base.get(key), raw.get(key))
            container.add(key, table)
