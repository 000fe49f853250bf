"""User-supplied models: ``package.module:callable``, called as ``callable(num_features, **args)``.

The callable must return a ``torch.nn.Module`` mapping ``(n, num_features)`` to ``(n, 1)``.
"""

from __future__ import annotations

import importlib

from torch import nn

from fedcare.errors import SpecError

PluginArgs = dict[str, int | float | str | bool]


def build_plugin(reference: str, num_features: int, args: PluginArgs) -> nn.Module:
    """Import ``reference`` (``module:callable``), call it and check it returns an ``nn.Module``.

    Every failure (bad reference, import error, missing attribute, the call raising, a result
    that is not a Module) is a one-line :class:`SpecError` naming the plug-in.
    """
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise SpecError(f"model.plugin {reference!r}: expected 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001  # any import-time failure is the plug-in's
        raise SpecError(
            f"model.plugin {reference!r}: cannot import module {module_name!r}: {_describe(exc)}"
        ) from None
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise SpecError(
            f"model.plugin {reference!r}: module {module_name!r} has no callable {attr!r}"
        )
    try:
        model = factory(num_features, **args)
    except Exception as exc:  # noqa: BLE001  # the user's code failed; say where
        raise SpecError(
            f"model.plugin {reference!r}: calling it with num_features={num_features} and "
            f"args {args!r} raised {_describe(exc)}"
        ) from None
    if not isinstance(model, nn.Module):
        raise SpecError(
            f"model.plugin {reference!r}: returned {type(model).__name__}, "
            "expected a torch.nn.Module"
        )
    return model


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line, cut to a readable length."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:297] + "..."
