"""Package attributes imported on first use, so that importing a study package stays light.

``gradlab stages`` imports every study's ``config.py``, and with it the study's package
``__init__``; a public name that lives in a torch module is imported only when used::

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {"soft_rank": "gradlab.studies.spearman.softrank"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]], list]:
    """Module-level ``__getattr__``, ``__dir__`` and ``__all__`` for ``package`` serving ``{name: module}`` lazily."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)  # later look-ups are plain attributes
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__, list(exports)
