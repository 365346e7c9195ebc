"""Finding and loading certificate templates: a file path, or a name looked up in the configured
folders then the bundled ones; parsed (TOML or JSON), validated, and cached per file version."""

from __future__ import annotations

import json
import threading
import tomllib
from pathlib import Path

from certificates.errors import TemplateError
from certificates.template import TEMPLATES_DIR, Template
from certificates.validate import validate_template

_cache_lock = threading.Lock()
_cache: dict[tuple[str, int], Template] = {}


def template_path(ref: str | Path | None = None, *, search_dirs: tuple[Path, ...] = ()) -> Path:
    """Find a template: a file path, or a name looked up in `search_dirs` then the bundled ones."""
    ref = ref or "default"
    candidate = Path(ref).expanduser()
    if candidate.suffix in (".toml", ".json") and candidate.is_file():
        return candidate.resolve()
    names = [str(ref)] if Path(str(ref)).suffix in (".toml", ".json") else [f"{ref}.toml", f"{ref}.json"]
    for directory in (*search_dirs, TEMPLATES_DIR):
        for file_name in names:
            if (Path(directory) / file_name).is_file():
                return (Path(directory) / file_name).resolve()
    known = sorted({p.stem for d in (*search_dirs, TEMPLATES_DIR) if Path(d).is_dir()
                    for p in Path(d).iterdir() if p.suffix in (".toml", ".json")})
    raise TemplateError(f"certificate template '{ref}' not found (known: {', '.join(known) or 'none'})")


def load_template(ref: str | Path | None = None, *, search_dirs: tuple[Path, ...] = ()) -> Template:
    """Load and validate a template (cached per file and modification time)."""
    path = template_path(ref, search_dirs=search_dirs)
    key = (str(path), path.stat().st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    try:
        raw = path.read_bytes()
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TemplateError(f"certificate template {path.name} cannot be parsed: {error}") from error
    template = validate_template(data, base_dir=path.parent, name=path.stem, source=path)
    with _cache_lock:
        _cache[key] = template
    return template
