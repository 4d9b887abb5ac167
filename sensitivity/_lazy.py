"""Modules imported on first use.

Importing ``scipy.sparse`` and ``scipy.linalg`` costs about 0.1 s (scipy's array-API layer
pulls in ``numpy.f2py``), a fifth of the latency budget of a first solve that never builds
a sparse matrix or calls LAPACK. Modules that need them only inside functions bind a
:class:`LazyModule` instead of the module itself.
"""

from __future__ import annotations

import importlib


class LazyModule:
    """Stand-in for module ``name``: the first attribute access imports it.

    Parameters
    ----------
    name : str
        Dotted module name, e.g. ``"scipy.sparse"``.
    """

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        module = importlib.import_module(self._name)
        # later lookups of this proxy still pass here, but importlib's cache makes it cheap
        return getattr(module, attr)

    def __repr__(self):
        return f"<lazily imported module {self._name!r}>"
