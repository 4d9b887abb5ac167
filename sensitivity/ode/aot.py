"""Ahead-of-time compiled solver kernels: a first solve without compiling the integrator.

The integrators take the user's functions by address (:func:`~sensitivity.ode.control.
addresses`), so their machine code does not depend on the problem. numba compiles them on
first use, about 10 s for one method in a process with an empty cache, and caches them on
disk. This module compiles them once more, ahead of time, with ``numba.pycc`` into an
extension module::

    python -m sensitivity.ode.aot          # about a minute; needs a C compiler

after which a first :func:`~sensitivity.ode.solve.solve` in a new process only compiles
(or loads from numba's cache) the user's right-hand side: under a second instead of ten,
even with an empty numba cache.

Which calls use it: the compiled solves of :func:`~sensitivity.ode.solve.solve` and
:class:`~sensitivity.ode.solve.Solver` (every method of ``METHODS``, with and without
events, dense or banded LU), whose arguments are arrays that ``solve`` builds itself
(validated copies: C-contiguous float64 or int64), and the staggered BDF and TR-BDF2
forward sensitivities, whose arguments :func:`fits` checks first: a pycc function does not
check the types of its arguments. The other sensitivity kernels, the adjoints and the
sparse LU path keep the JIT kernels.

Safety: the module's file name carries a fingerprint of everything its code depends on
(the sources of :mod:`sensitivity.ode` and of the dual-number layer, the numba, llvmlite
and Python versions, and the host CPU, since the code uses its instruction set). A changed
source, an upgrade or another machine finds no module of its fingerprint and runs the JIT
kernels, bitwise the same. ``SENSITIVITY_NO_AOT=1`` turns the module off;
``SENSITIVITY_AOT_DIR`` puts it elsewhere than beside this file (a read-only install).

The step loops are the same machine code as the JIT's; see :func:`_as_the_jit_compiles`
for the two settings of numba's ahead-of-time compiler that the build changes.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import warnings

import numpy as np
from numba.core import types

from sensitivity.ode.control import NO_NUMBA, PACKAGE_STAMP

# where builds go and are looked for: beside this module, unless the install is read-only
DIRECTORY = os.environ.get("SENSITIVITY_AOT_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "_aot"
)
PREFIX = "kernels_"
DISABLED = (
    NO_NUMBA
    or os.environ.get("SENSITIVITY_NO_AOT", "0") == "1"
    or os.environ.get("NUMBA_DISABLE_JIT", "0") == "1"  # debugging: all of it in Python
)

_TABLE = None  # the loaded kernels by key, {} when there are none


@functools.lru_cache(maxsize=1)
def fingerprint():
    """A hex string naming everything the compiled kernels depend on (see the module doc)."""
    import llvmlite
    import llvmlite.binding as llvm
    import numba

    from sensitivity.ad.nb_types import STAMP

    features = llvm.get_host_cpu_features().flatten()
    with open(CONSTANTS_C, "rb") as fh:
        helper = hashlib.sha256(fh.read()).hexdigest()
    parts = (PACKAGE_STAMP, STAMP, helper, numba.__version__, llvmlite.__version__,
             sys.version, llvm.get_host_cpu_name(), features)  # fmt: skip
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def module_path(directory=None):
    """The file the kernels of this fingerprint live in (it may not exist)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return os.path.join(directory or DIRECTORY, PREFIX + fingerprint() + suffix)


def _module_name(path):
    """The extension's module name: its file name without suffixes (pycc names the init
    function after it, so the loader must use the same name)."""
    return os.path.basename(path).split(".")[0]


def _exports():
    """``[(key, dispatcher, signature)]``: every kernel that :func:`kernel` serves.

    Keys: an explicit method's name; ``(kernel name, g is None)`` for the stiff kernels,
    whose event code is pruned when there are no events (``g`` is None). The signatures are
    those ``solve`` calls with (the contract of the kernels' docstrings): function
    addresses int64, the other arrays float64, event flags int64, all 1-D C-contiguous.
    """
    from sensitivity.ode import bdf, esdirk, rosenbrock
    from sensitivity.ode.solve import METHODS, ExplicitRK

    i1, f1 = types.Array(types.int64, 1, "C"), types.Array(types.float64, 1, "C")
    out = []
    for method in METHODS.values():
        if isinstance(method, ExplicitRK):
            sig = (i1, i1) + (f1,) * 6 + (i1, i1)
            out.append((method.tableau.name, method.kernel, sig))
    for disp, tail in ((bdf.bdf_solve, 1), (esdirk.esdirk_solve, 1), (rosenbrock.rodas_solve, 0)):
        for g in (types.none, i1):
            key = (disp.py_func.__name__, g is types.none)
            out.append((key, disp, (i1, g) + (f1,) * 6 + (i1, i1) + (f1,) * tail))
    return out


def _export_name(key):
    return key if isinstance(key, str) else f"{key[0]}_{'plain' if key[1] else 'events'}"


def build(directory=None, keys=None, verbose=False):
    """Compile the kernels into :func:`module_path` (removing older builds there).

    Parameters
    ----------
    directory : str, optional
        Where to write (default :data:`DIRECTORY`: ``_aot`` beside this module, or
        ``SENSITIVITY_AOT_DIR``; solves look there only).
    keys : iterable, optional
        Only these kernels (keys of :func:`_exports`; for tests).
    verbose : bool
        Show the compiler's commands.

    Returns
    -------
    str
        The module's path.
    """
    with warnings.catch_warnings():  # numba announces pycc's replacement
        warnings.simplefilter("ignore")
        from numba.pycc import CC

    class WithConstants(CC):
        def _get_mixin_sources(self):
            return super()._get_mixin_sources() + [CONSTANTS_C]

    directory = directory or DIRECTORY
    os.makedirs(directory, exist_ok=True)
    path = module_path(directory)
    cc = WithConstants(_module_name(path))
    cc.output_dir = directory
    cc.target_cpu = "host"  # the JIT's code: the fingerprint ties the file to this CPU
    cc.verbose = verbose
    wanted = None if keys is None else set(keys)
    for key, disp, sig in _exports():
        if wanted is None or key in wanted:
            cc.export(_export_name(key), sig)(disp.py_func)
    with _as_the_jit_compiles():
        cc.compile()
    for old in glob.glob(os.path.join(directory, PREFIX + "*")):
        if os.path.abspath(old) != os.path.abspath(path):
            os.remove(old)
    global _TABLE
    _TABLE = None  # load the new build on the next call
    return path


CONSTANTS_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_aot_constants.c")


@contextlib.contextmanager
def _as_the_jit_compiles():
    """Two settings of numba's ahead-of-time compiler, for the duration of a build.

    - It compiles the exported functions with numba's default flags; the kernels' jit
      options include numpy's error model (``x / 0.0`` gives inf, which the steps test for,
      instead of raising ZeroDivisionError).
    - Its runtime unpickles a constant (the class of a returned array) at every use, about
      1 us per solve; the calls go to ``sensitivity_unpickle_once`` of
      :data:`CONSTANTS_C` instead, which keeps each result, as numba's JIT runtime does.
    """
    import numba.pycc.compiler as pycc_compiler
    from llvmlite import ir
    from numba.core.pythonapi import PythonAPI

    flags, unserialize = pycc_compiler.Flags, PythonAPI.unserialize

    class NumpyErrors(flags):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.error_model = "numpy"

    def unserialize_once(self, structptr):
        if not self.context.aot_mode:  # the JIT compiling a callee during the build
            return unserialize(self, structptr)
        # structptr: {i8* data, i32 length, i8* hash, ...}, the blob numba serialised
        fnty = ir.FunctionType(self.pyobj, (self.voidptr, ir.IntType(32), self.voidptr))
        fn = self._get_function(fnty, name="sensitivity_unpickle_once")
        blob = self.builder.load(structptr)
        return self.builder.call(fn, [self.builder.extract_value(blob, i) for i in range(3)])

    pycc_compiler.Flags, PythonAPI.unserialize = NumpyErrors, unserialize_once
    try:
        yield
    finally:
        pycc_compiler.Flags, PythonAPI.unserialize = flags, unserialize


def _load(directory=None):
    """The kernels of this fingerprint by key, or {} (no build, or disabled)."""
    if DISABLED:
        return {}
    path = module_path(directory)
    if not os.path.exists(path):
        return {}
    name = _module_name(path)
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    table = {}
    for key, _, _ in _exports():
        fn = getattr(module, _export_name(key), None)
        if fn is not None:
            table[key] = fn
    return table


def kernel(key):
    """The compiled kernel of ``key`` (see :func:`_exports`), or None: run the JIT one."""
    global _TABLE
    if _TABLE is None:
        _TABLE = _load()
    return _TABLE.get(key)


def fits(key, args):
    """True if ``args`` have the types the kernel of ``key`` was compiled for: a pycc
    function reads its arguments as those types whatever they are."""
    sig = _SIGNATURES.get(key)
    if sig is None:
        sig = _SIGNATURES[key] = {k: s for k, _, s in _exports()}[key]
    if len(args) != len(sig):
        return False
    for arg, want in zip(args, sig):
        if want is types.none:
            if arg is not None:
                return False
        elif not (
            type(arg) is np.ndarray
            and arg.dtype == _DTYPES[want.dtype.name]
            and arg.ndim == 1
            and arg.flags.c_contiguous
        ):
            return False
    return True


_SIGNATURES = {}
_DTYPES = {"int64": np.dtype(np.int64), "float64": np.dtype(np.float64)}


@contextlib.contextmanager
def jit_only():
    """Within the block, every solve runs the JIT kernels (for warm-ups and comparisons)."""
    global _TABLE
    saved, _TABLE = _TABLE, {}
    try:
        yield
    finally:
        _TABLE = saved


def use(directory=None):
    """Serve the kernels from ``directory`` from now on (None: the default; for tests)."""
    global _TABLE
    _TABLE = _load(directory)
    return dict(_TABLE)


def main(argv=None):
    """``python -m sensitivity.ode.aot [--dir D] [--verbose]``: build, or say why not."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help=f"output directory (default: {DIRECTORY})")
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the build fails")
    args = parser.parse_args(argv)
    if DISABLED:
        print("sensitivity.ode.aot: numba is off (SENSITIVITY_NO_NUMBA/NO_AOT): nothing to do")
        return 0
    start = time.perf_counter()
    try:
        path = build(args.dir, verbose=args.verbose)
    except Exception as exc:  # no C compiler, read-only install, ...: the JIT still works
        print(f"sensitivity.ode.aot: could not build the kernels ({type(exc).__name__}: "
              f"{exc}); solves compile them on first use instead")  # fmt: skip
        return 1 if args.strict else 0
    print(f"sensitivity.ode.aot: built {path} in {time.perf_counter() - start:.0f} s")
    if args.dir and os.path.abspath(args.dir) != os.path.abspath(DIRECTORY):
        print(f"  solves look in {DIRECTORY}: set SENSITIVITY_AOT_DIR={args.dir} to use it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
