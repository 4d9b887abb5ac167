"""Eight float64 lanes at a time: loads, stores, arithmetic and a prefetch hint for
hand-vectorised sweeps.

Inside a numba kernel ``load(a, k)`` is one ``<8 x double>`` load of ``a[k:k+8]``,
``store(a, k, x)`` one store, ``+``, ``-`` and ``*`` act lane by lane (a float
times lanes too), and ``prefetch(a, k)`` / ``prefetch_write(a, k)`` ask the cache
for the line that holds ``a[k]``, to read or to write it. Called from Python (or
under ``NUMBA_DISABLE_JIT=1``) the same functions work on numpy arrays of eight
values and the prefetches do nothing; every operation is the same IEEE operation
lane by lane, so both give the same bits.

Why: LLVM vectorises a plain loop by itself, but not one that also issues
prefetches, and a sweep that streams a large array to or from memory while it
computes gains from them (the store-all FWI gradient: see
:func:`sensitivity.pde.wave_kernels.step_image_inplace` and
:func:`~sensitivity.pde.wave_kernels.step_image_pair`). The compiled loads and
stores do not check bounds: a kernel runs them on whole groups of eight inside
its arrays and finishes the remainder with scalar code.

numba's cache tracks only the file of a cached kernel: after a change here,
clear the caches of the kernels that use these functions (their own files are
unchanged), as after any change to a helper in another module.
"""

from __future__ import annotations

import operator

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

from sensitivity.ad.nb_types import VecType, _vty, vadd, vscale, vsub

LANES = 8
_VEC = VecType(LANES)


def load(a, k):
    """``a[k:k+8]`` (a copy; compiled: one vector load, unchecked)."""
    return a[k : k + LANES].copy()


def store(a, k, x):
    """``a[k:k+8] = x`` (compiled: one vector store, unchecked)."""
    a[k : k + LANES] = x


def prefetch(a, k):
    """Ask for the cache line that holds ``a[k]``, to read it; a hint, which never faults
    (compiled only: nothing happens in Python)."""


def prefetch_write(a, k):
    """Ask for the cache line that holds ``a[k]``, to write it (:func:`prefetch`)."""


def _float_vector(a):
    return (
        isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" and a.dtype == types.float64
    )


def _pointer(context, builder, aty, arr, oty, off, inbounds=True):
    data = context.make_array(aty)(context, builder, arr).data
    off = context.cast(builder, off, oty, types.intp)
    return builder.gep(data, [off], inbounds=inbounds)


@intrinsic
def _vload(typingctx, a, k):
    if _float_vector(a) and isinstance(k, types.Integer):

        def codegen(context, builder, sig, args):
            p = _pointer(context, builder, a, args[0], k, args[1])
            return builder.load(builder.bitcast(p, _vty(LANES).as_pointer()), align=8)

        return _VEC(a, k), codegen
    return None


@intrinsic
def _vstore(typingctx, a, k, x):
    if _float_vector(a) and a.mutable and isinstance(k, types.Integer) and x == _VEC:

        def codegen(context, builder, sig, args):
            p = _pointer(context, builder, a, args[0], k, args[1])
            builder.store(args[2], builder.bitcast(p, _vty(LANES).as_pointer()), align=8)
            return context.get_dummy_value()

        return types.void(a, k, x), codegen
    return None


@intrinsic
def _vmul(typingctx, x, y):
    if isinstance(x, VecType) and x == y:

        def codegen(context, builder, sig, args):
            return builder.fmul(args[0], args[1])

        return x(x, y), codegen
    return None


def _prefetch_intrinsic(write):
    """An intrinsic ``(a, k)``: ``llvm.prefetch`` of ``&a[k]``, to read or to write."""

    def pf(typingctx, a, k):
        if not (_float_vector(a) and isinstance(k, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            # not inbounds: a hint may point past the array (it never faults)
            p = _pointer(context, builder, a, args[0], k, args[1], inbounds=False)
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            # read (0) or write (1), keep in all cache levels (locality 3), data cache
            flags = [ir.Constant(i32, int(write)), ir.Constant(i32, 3), ir.Constant(i32, 1)]
            builder.call(fn, [builder.bitcast(p, i8p)] + flags)
            return context.get_dummy_value()

        return types.void(a, k), codegen

    pf.__name__ = pf.__qualname__ = "_prefetch_write" if write else "_prefetch"
    return intrinsic(pf)


_prefetch, _prefetch_write = _prefetch_intrinsic(False), _prefetch_intrinsic(True)


def _lower_to(intrinsic_fn):
    """An overload implementation ``(a, k)`` that calls ``intrinsic_fn`` on float64 C vectors."""

    def impl(a, k):
        if _float_vector(a):
            return lambda a, k: intrinsic_fn(a, k)
        return None

    return impl


for _fn, _intr in ((load, _vload), (prefetch, _prefetch), (prefetch_write, _prefetch_write)):
    overload(_fn, target="cpu")(_lower_to(_intr))


@overload(store, target="cpu")
def _store(a, k, x):
    if _float_vector(a):
        return lambda a, k, x: _vstore(a, k, x)
    return None


@overload(operator.add, target="cpu")
def _add(x, y):
    if x == _VEC and y == _VEC:
        return lambda x, y: vadd(x, y)
    return None


@overload(operator.sub, target="cpu")
def _sub(x, y):
    if x == _VEC and y == _VEC:
        return lambda x, y: vsub(x, y)
    return None


@overload(operator.mul, target="cpu")
def _mul(x, y):
    if x == _VEC and y == _VEC:
        return lambda x, y: _vmul(x, y)
    if isinstance(x, types.Float) and y == _VEC:
        return lambda x, y: vscale(x, y)
    return None
