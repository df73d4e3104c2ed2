"""Ready screening models shipped with stetho: ``stetho:NAME`` instead of a folder path.

```
stetho/zoo/
  README.md                what goes here
  <name>/                  one ready model: exactly the folder ``stetho export RUN --out DIR``
    model.onnx ...         writes (a :class:`~stetho.runs.folder.PipelineFolder`), plus
    MODEL_CARD.md          what it was trained on, how well it does, where not to use it
```

Every command that scores with a model (``stetho predict``, ``serve``, ``evaluate``) takes
``stetho:NAME`` where it takes a pipeline folder; :func:`resolve_model` turns the name into the
packaged folder. A packaged model lives inside the installed package: it is only ever read
(:func:`check_outside_zoo` refuses an output inside it). ``stetho models`` lists them.
"""

from __future__ import annotations

from pathlib import Path

from stetho.io import ArtifactError
from stetho.models.pretrained import PACKAGED_PREFIX
from stetho.runs.folder import PipelineFolder

#: The package-data folder holding one sub-folder per ready model.
ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo"
#: ``stetho:NAME`` names a packaged model (the prefix of the packaged pretrained backbones).
PREFIX = PACKAGED_PREFIX
#: A ready model's description, beside its pipeline files.
MODEL_CARD = "MODEL_CARD.md"
#: How to see what is shipped.
LIST_HINT = "list the ready models with `stetho models`"
REINSTALL = "reinstall stetho (pip install --force-reinstall stetho)"


def list_models() -> list[str]:
    """Names of the ready models in this install (``stetho:NAME``), sorted."""
    if not ZOO_DIR.is_dir():
        return []
    return sorted(p.name for p in ZOO_DIR.iterdir() if p.is_dir() and PipelineFolder(p).is_pipeline)


def is_model_name(value: str | Path) -> bool:
    """Whether ``value`` is ``stetho:NAME`` (a packaged model), not a path."""
    return str(value).startswith(PREFIX)


def model_name(value: str | Path) -> str:
    """``stetho:NAME`` (or plain ``NAME``) -> ``NAME``."""
    text = str(value)
    return text[len(PREFIX) :] if is_model_name(text) else text


def shipped_text() -> str:
    """The ready models of this install, for messages."""
    names = list_models()
    if not names:
        return "none is shipped in this install"
    return "shipped: " + ", ".join(PREFIX + n for n in names)


def model_dir(name: str | Path) -> Path:
    """The packaged folder of model ``name`` (``NAME`` or ``stetho:NAME``).

    An unknown name is a ``ValueError`` naming it, the shipped models and ``stetho models``; a
    folder that is there but holds no ONNX graph is an :class:`~stetho.io.ArtifactError`.
    """
    text = str(name)
    bare = model_name(text)
    shown = PREFIX + bare
    # A name is one folder of the zoo: never a path that leads out of it.
    if not bare or bare in (".", "..") or "/" in bare or "\\" in bare:
        raise ValueError(
            f"{shown!r}: not a ready model name (stetho:NAME); {shipped_text()}; {LIST_HINT}"
        )
    folder = ZOO_DIR / bare
    if not folder.is_dir():
        raise ValueError(
            f"{shown}: stetho ships no ready model {bare!r}; {shipped_text()}; {LIST_HINT} "
            "(or give the path of a run folder or of a pipeline written by `stetho export`)"
        )
    pipeline = PipelineFolder(folder)
    if not pipeline.is_pipeline:
        raise ArtifactError(pipeline.model, f"missing from the packaged model {shown}", REINSTALL)
    return folder


def resolve_model(value: str | Path) -> Path:
    """``stetho:NAME`` -> the packaged model's folder; any other value -> ``Path(value)``."""
    if is_model_name(value):
        return model_dir(value)
    return Path(value)


def card_path(name: str | Path) -> Path:
    """Where the model card of ``name`` is (checked to be a shipped model)."""
    return model_dir(name) / MODEL_CARD


def model_card(name: str | Path) -> str:
    """The model card (Markdown) of ready model ``name``; :class:`~stetho.io.ArtifactError`
    when the model ships without one."""
    path = card_path(name)
    if not path.is_file():
        raise ArtifactError(
            path, f"the ready model {PREFIX}{model_name(name)} has no card", REINSTALL
        )
    return path.read_text(encoding="utf-8")


def card_summary(card: str) -> str:
    """A card's first non-empty line, without its Markdown heading marks."""
    for line in card.splitlines():
        text = line.strip().lstrip("#").strip()
        if text:
            return text
    return ""


def in_zoo(path: str | Path) -> bool:
    """Whether ``path`` is the zoo folder or lies inside it (links resolved)."""
    target = Path(path).expanduser().resolve()
    zoo = ZOO_DIR.resolve()
    return target == zoo or zoo in target.parents


def check_outside_zoo(path: str | Path, *, option: str = "--out") -> None:
    """Refuse to write ``path`` inside the installed ready models (they are read-only)."""
    if in_zoo(path):
        raise ValueError(
            f"{option} {path} lies inside the packaged ready models ({ZOO_DIR}), which are "
            "only ever read: write it elsewhere"
        )


#: What a ready model is good for, where a run is needed.
SCORE_WITH = "score with it through stetho predict, stetho serve or stetho evaluate"


def refuse_model_name(value: str | Path, *, needs: str, hint: str = SCORE_WITH) -> None:
    """A ``ValueError`` for ``stetho:NAME`` where a training run is needed (``needs``: what
    needs it, e.g. ``"stetho report"``): a ready model is a scoring pipeline, not a run."""
    if is_model_name(value):
        raise ValueError(
            f"{value}: a ready model is a scoring pipeline, not a training run, and {needs} "
            f"needs a finished run folder (runs/<name>); {hint}"
        )
