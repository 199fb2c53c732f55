"""Count calls of a library function wherever a retinascreen module has bound it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def count_calls(
    monkeypatch: Any,
    function: Callable[..., Any],
    counts: dict[str, int],
    key: str,
    *,
    when: Callable[..., bool] | None = None,
) -> None:
    """Wrap ``function`` in every loaded ``retinascreen`` module that holds it, so that each
    call (for which ``when(*args)`` is true, if given) adds one to ``counts[key]``."""
    counts.setdefault(key, 0)

    def counting(*args: Any, **kwargs: Any) -> Any:
        if when is None or when(*args, **kwargs):
            counts[key] += 1
        return function(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if not name.startswith("retinascreen") or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            if value is function:
                monkeypatch.setattr(module, attribute, counting)
