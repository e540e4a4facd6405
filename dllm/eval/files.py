"""The evaluation harness's own files (a sweep spec, an output folder's configs.json and spec.yaml):
read with errors that name the file and, for an output folder's files, say what to do.

Every error is a ``FileNotFoundError`` or a ``ValueError``, which the CLIs print as one line.
"""

from __future__ import annotations

from pathlib import Path


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; ``what`` names the file in errors (``"sweep spec"``)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path} is a folder, not a file") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ValueError(f"{what} {path} cannot be read ({err.strerror or err})") from None


def parse_yaml(text: str, where: str):
    """``text`` parsed as YAML; a ValueError naming ``where`` and the line when it is not valid YAML."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ValueError(f"{where} is not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None


def read_yaml(path: Path, what: str, remedy: str = ""):
    """The YAML document in ``path`` (see :func:`read_text`); ``remedy`` is appended to its errors."""
    try:
        return parse_yaml(read_text(path, what), f"{what} {path}")
    except ValueError as exc:
        raise ValueError(_with(exc, remedy)) from None


def read_json_object(path: Path, what: str, remedy: str = "") -> dict:
    """The JSON object in ``path``: the checkpoint loader's reader (it names the file, the line and
    the column), with ``remedy`` appended to its errors."""
    from dllm.models.loading import read_json

    try:
        read_text(path, what)  # a folder, unreadable bytes, no permission: named the same way
        return read_json(path, "a JSON object")
    except ValueError as exc:
        raise ValueError(_with(exc, remedy)) from None


def output_file_remedy(path: Path, run: bool = True) -> str:
    """What to do about a damaged file of a sweep's output folder (``run``: said to ``dllm eval run``,
    which can also write elsewhere)."""
    where = " or pass another --out folder" if run else ""
    again = "the next `dllm eval run` on this folder writes it again; records/ is kept"
    return f"delete {path.name} ({again}){where}"


def _with(exc: Exception, remedy: str) -> str:
    return f"{exc}; {remedy}" if remedy else str(exc)
