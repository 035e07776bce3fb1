"""The user's own source line: the innermost stack frame outside torch, gradlab and the training frameworks."""

from __future__ import annotations

import linecache
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch

_TORCH_DIR = str(Path(torch.__file__).resolve().parent) + os.sep
_GRADLAB_DIR = str(Path(__file__).resolve().parents[1]) + os.sep
_DOCTOR_DIR = str(Path(__file__).resolve().parent) + os.sep
_STDLIB_WRAPPERS = ("contextlib.py", "functools.py", "runpy.py", "<frozen runpy>")
_FRAMEWORKS = ("pytorch_lightning", "lightning", "lightning_fabric", "torchvision", "torchmetrics", "typing_extensions")


@dataclass(frozen=True)
class SourceLine:
    """``file:line`` of a frame, its function and the text of the line (read when first asked for)."""

    file: str
    line: int
    function: str

    @property
    def code(self) -> str:
        return linecache.getline(self.file, self.line).strip()

    def __str__(self) -> str:
        return f"{self.file}:{self.line} in {self.function}: {self.code}"


def _framework_dirs() -> tuple[str, ...]:
    dirs = []
    for name in _FRAMEWORKS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            dirs.append(str(Path(module.__file__).resolve().parent) + os.sep)
    return tuple(dirs)


class FrameFilter:
    """Decides which frames are library frames. ``skip_gradlab=False`` counts gradlab's studies as user code."""

    def __init__(self, skip_gradlab: bool = True, extra: tuple[str, ...] = ()):
        skip = [_TORCH_DIR, _DOCTOR_DIR, *_framework_dirs(), *extra]
        if skip_gradlab:
            skip.append(_GRADLAB_DIR)
        self.prefixes = tuple(skip)
        self._cache: dict[str, bool] = {}
        self._lines: dict[tuple, SourceLine] = {}  # (code, line) -> its SourceLine, made once

    def is_library(self, filename: str) -> bool:
        hit = self._cache.get(filename)
        if hit is None:
            real = os.path.realpath(filename) if not filename.startswith("<") else filename
            hit = real.startswith(self.prefixes) or filename.endswith(_STDLIB_WRAPPERS) or "importlib" in filename
            self._cache[filename] = hit
        return hit

    def user_frame(self, frame: types.FrameType | None) -> SourceLine | None:
        """The innermost frame at or above ``frame`` that is not a library frame."""
        while frame is not None:
            code = frame.f_code
            if not self.is_library(code.co_filename):
                key = (code, frame.f_lineno)  # asked for every step by the cheap checks: made once
                line = self._lines.get(key)
                if line is None:
                    line = self._lines[key] = _line(code.co_filename, key[1], code.co_name)
                return line
            frame = frame.f_back
        return None

    def here(self) -> SourceLine | None:
        """The user frame of the current call stack."""
        return self.user_frame(sys._getframe(1))

    def from_traceback(self, tb: types.TracebackType | None) -> SourceLine | None:
        """The innermost user frame of an exception's traceback (where the user's code called into torch)."""
        found = None
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if not self.is_library(filename):
                found = _line(filename, tb.tb_lineno, tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        return found


def _line(filename: str, lineno: int, function: str) -> SourceLine:
    return SourceLine(filename, lineno, function)
