"""Step-size control and the step bookkeeping shared by every stepper.

Error norm (Hairer, Norsett & Wanner I, II.4, eq. 4.11)::

    ||err|| = sqrt(mean((err_i / (atol_i + rtol * max(|y_i|, |y_new_i|)))**2))

A step is accepted when ``||err|| <= 1``. The next step is ``h * factor`` with the PI
controller of Gustafsson (1991) in the form of Hairer & Wanner II, IV.2 (eq. 2.43c)::

    factor = SAFETY * ||err_n||**(-BETA1/k) * ||err_{n-1}||**(BETA2/k),   k = err_order + 1

clipped to [MIN_FACTOR, MAX_FACTOR], and never above 1 right after a rejection.

Dense output of every stepper is stored in one form, a polynomial around an anchor::

    y(t_a + s h) = y_a + sum_j Q[:, j] s**(j+1)

(explicit RK: anchor t_old, s in [0, 1]; BDF: anchor t_new, s in [-1, 0]), so that
``t_eval``, events and :class:`~sensitivity.ode.solve.Solution` share one evaluator.

All functions here are plain Python on arrays; :func:`jit` compiles them with numba
(``cache=True``) unless numba is disabled.
"""

from __future__ import annotations

import hashlib
import math
import os
import types
import warnings

import numba
import numba.core.caching
import numpy as np
from numba.core import cgutils
from numba.core.dispatcher import Dispatcher
from numba.core.errors import NumbaExperimentalFeatureWarning
from numba.extending import intrinsic, overload

SAFETY = 0.9  # Hairer's fac: keeps the next error estimate comfortably below 1
MIN_FACTOR = 0.2  # largest shrink per step (Hairer's facl = 5)
MAX_FACTOR = 10.0  # largest growth per step (Hairer's facr = 0.1)
BETA1 = 0.7  # PI gains of Gustafsson (1991), as in Hairer-Wanner (2.43c)
BETA2 = 0.4
EPS = 2.220446049250313e-16  # float64 machine epsilon; steps below 10 eps |t| are lost
ERR_FLOOR = 1e-4  # errors below count as this in the controller's memory
LOG_ERR_FLOOR = math.log(ERR_FLOOR)

# Status codes shared by all steppers (0 = reached t_end, 1 = terminal event). numpy
# integers, so that numba types a kernel's status variable as int64, not as one literal:
# the ahead-of-time compiler (sensitivity.ode.aot) refuses to unify two integer literals.
SUCCESS, TERMINATED, STEP_TOO_SMALL, MAX_STEPS, NONFINITE, NEWTON_FAILED = (
    np.int64(c) for c in (0, 1, -1, -2, -3, -4)
)

NO_NUMBA = os.environ.get("SENSITIVITY_NO_NUMBA", "0") == "1"


def _package_stamp():
    """Hash of every source file of this package directory (the kernels call across files)."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(_HERE)):
        if name.endswith(".py"):
            with open(os.path.join(_HERE, name), "rb") as fh:
                digest.update(fh.read())
    return digest.hexdigest()


_HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_STAMP = _package_stamp()


def _stamped(base):
    """A numba cache locator for this package whose freshness stamp covers all its files.

    numba checks only the defining file's timestamp, so a kernel in explicit.py that inlines
    a helper from events.py would otherwise load stale machine code after events.py changes
    (an upgrade, or development).
    """

    class Stamped(base):
        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.dirname(os.path.abspath(py_file)) != _HERE:
                return None
            return super().from_function(py_func, py_file)

        def get_source_stamp(self):
            return (super().get_source_stamp(), PACKAGE_STAMP)

    return Stamped


_LOCATORS = numba.core.caching.CacheImpl._locator_classes
if not any(getattr(c, "__qualname__", "").startswith("_stamped") for c in _LOCATORS):
    _LOCATORS[1:1] = [
        _stamped(numba.core.caching.InTreeCacheLocator),
        _stamped(numba.core.caching.UserWideCacheLocator),
    ]

# The kernels take the user's functions as first-class functions by design (below): numba's
# note that the feature is experimental would be noise at every first compile.
warnings.filterwarnings("ignore", ".*First-class function type", NumbaExperimentalFeatureWarning)

# Kernel signatures. The user's functions enter compiled kernels as first-class functions
# (not as dispatcher types), so that one cached machine-code kernel serves every problem
# and a fresh process reloads it from numba's cache instead of recompiling.
f8 = numba.types.float64
i8 = numba.types.int64
f8_1d = numba.types.Array(f8, 1, "C")
f8_2d = numba.types.Array(f8, 2, "C")
f8_3d = numba.types.Array(f8, 3, "C")
i8_1d = numba.types.Array(i8, 1, "C")
RHS_SIG = numba.types.void(f8, f8_1d, f8_1d, f8_1d)  # rhs(t, y, p, dydt)
JAC_SIG = numba.types.void(f8, f8_1d, f8_1d, f8_2d)  # jac(t, y, p, J)
RHS_T = numba.types.FunctionType(RHS_SIG)
EVENT_T = RHS_T  # g(t, y, p, out)
JAC_T = numba.types.FunctionType(JAC_SIG)
# trace = (status, y_out, extra): extra packs [t, component of a failure, nfev, njev, nlu,
#          nsteps, nreject], t_out, the events and the dense record
#          (sensitivity.ode.events.finish_trace / unpack_extra)
TRACE_T = numba.types.Tuple((i8, f8_2d, f8_1d))


def jit(inline=False, twin=False, first_class=False):
    """Compile with numba (``cache=True``), or leave plain Python under SENSITIVITY_NO_NUMBA=1.

    ``inline=True`` inlines the function into its callers at numba-IR level: calls between
    separately compiled functions are not inlined by LLVM and cost ~20 ns each (argument
    structs, reference counts), which matters for the per-step helpers.

    ``twin=True`` marks a function that calls user code or the linear algebra: its
    :func:`python_twin` is interpreted. Unmarked helpers (array arithmetic) stay compiled
    inside a Python twin, so the interpreted path stays fast for large n.

    ``first_class=True`` keeps the C-ABI wrapper that first-class calls need (functions
    passed to kernels by address); the other kernels skip it, which shortens the first
    compile a little.
    """

    def wrap(func):
        if NO_NUMBA:
            func.needs_twin = twin  # python_twin follows these through plain functions too
            return func
        # numpy's error model: x / 0.0 gives inf or NaN, which the steps' finiteness tests
        # turn into success=False with a message, instead of a ZeroDivisionError escaping
        # from the kernel (and no zero test before every division)
        options = {"no_cfunc_wrapper": not first_class, "error_model": "numpy"}
        disp = numba.njit(cache=True, inline="always" if inline else "never", **options)(func)
        disp.needs_twin = twin
        return disp

    return wrap


def addresses(func, sig):
    """Return (cfunc-wrapper address, numba-ABI address) of dispatcher ``func`` for ``sig``.

    Kernels receive user functions as these two integers and rebuild a first-class function
    with :func:`as_rhs`/:func:`as_jac`: passing a dispatcher instead costs about 60 us of
    conversion per call and per function, and its type would tie the on-disk cache to one
    process.
    """
    # kept on the dispatcher itself: the addresses live exactly as long as its code does
    cache = getattr(func, "_sensitivity_addresses", None)
    if cache is None:
        cache = {}
        func._sensitivity_addresses = cache
    if id(sig) not in cache:
        func.compile(sig)
        cres = func.get_compile_result(sig)
        lib = cres.library
        cache[id(sig)] = (
            lib.get_pointer_to_function(cres.fndesc.llvm_cfunc_wrapper_name),
            lib.get_pointer_to_function(cres.fndesc.llvm_func_name),
        )
    return cache[id(sig)]


def _function_from_addresses(fn_type):
    @intrinsic
    def as_function(typingctx, c_addr, jit_addr):
        def codegen(context, builder, signature, args):
            s = cgutils.create_struct_proxy(fn_type)(context, builder)
            vp = context.get_value_type(numba.types.voidptr)
            s.c_addr = builder.inttoptr(args[0], vp)
            s.py_addr = cgutils.get_null_value(vp)
            # calls go through numba's ABI, so exceptions in the callee propagate
            s.jit_addr = builder.inttoptr(args[1], vp)
            return s._getvalue()

        return fn_type(i8, i8), codegen

    return as_function


def user_functions(fn_type):
    """Return ``at(fns, i)``: the i-th user function of a kernel's ``fns`` argument.

    A kernel takes its user functions (right-hand side, Jacobian, ...) as one argument
    ``fns``: compiled, an int64 array of two addresses per function (:func:`addresses`),
    from which ``at`` rebuilds the first-class function of type ``fn_type``; in a Python
    twin, a tuple of the callables, which ``at`` indexes. The kernel is then itself the
    cached entry point: a wrapper taking the addresses would be a second compilation layer
    that re-optimises and re-emits the whole kernel (about 1.5 s of a 12 s first compile).
    """
    as_function = _function_from_addresses(fn_type)

    def at(fns, i):
        return fns if callable(fns) else fns[i]  # a lone function stands for itself

    @overload(at, jit_options={"cache": True}, inline="always")
    def _at(fns, i):
        if isinstance(fns, numba.types.Array):
            return lambda fns, i: as_function(fns[2 * i], fns[2 * i + 1])
        if isinstance(fns, numba.types.FunctionType):
            return lambda fns, i: fns
        return None

    return at


rhs_at = user_functions(RHS_T)
jac_at = user_functions(JAC_T)


def borrow(a):
    """Return ``a`` as a view that compiled code does not reference-count.

    Every array a compiled step loop passes on (stage rows ``K[i]`` to the right-hand side,
    work vectors to inlined helpers) costs an atomic increment and decrement of its owner's
    count: ~20% of a small explicit solve (Lotka-Volterra, n = 2). A borrowed view carries
    no owner, so those become no-ops. The caller keeps the owner alive for as long as the
    view is used (:func:`hold` after the last use). Plain Python (and ``NUMBA_DISABLE_JIT``)
    gets ``a`` itself.
    """
    return a


@intrinsic
def _borrowed(typingctx, arr):
    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, args[0])
        out = context.make_array(signature.return_type)(context, builder)
        out.meminfo = cgutils.get_null_value(out.meminfo.type)  # NRT skips null owners
        out.parent = cgutils.get_null_value(out.parent.type)
        out.nitems, out.itemsize, out.data = src.nitems, src.itemsize, src.data
        out.shape, out.strides = src.shape, src.strides
        return out._getvalue()

    return arr(arr), codegen


@overload(borrow, jit_options={"cache": True})
def _borrow_impl(a):
    if isinstance(a, numba.types.Array):
        return lambda a: _borrowed(a)
    return None


@jit()
def hold(*arrays):
    """Keep ``arrays`` alive up to this call (the owners of :func:`borrow` views)."""
    return len(arrays)


_TWINS = {}


def _twinned(callee):
    """Whether :func:`python_twin` copies ``callee`` too: compiled kernels (unless marked
    ``twin=False``) and, with numba off (``NUMBA_DISABLE_JIT=1`` or SENSITIVITY_NO_NUMBA=1),
    the plain functions :func:`jit` marked ``twin=True``, so overrides reach them as well."""
    if isinstance(callee, Dispatcher):
        return getattr(callee, "needs_twin", True)
    return isinstance(callee, types.FunctionType) and getattr(callee, "needs_twin", False)


def python_twin(func, overrides=None):
    """Return a plain-Python copy of kernel ``func`` whose callees are plain Python too.

    Used when the right-hand side is not compiled (``compile=False``) and for the sparse
    linear algebra: the same kernel source then runs interpreted. ``overrides`` maps global
    names (in ``func`` and its callees) to replacements, e.g. the sparse LU of
    :mod:`sensitivity.ode.linsolve`.
    """
    overrides = overrides or {}
    key = (func, tuple(sorted((k, id(v)) for k, v in overrides.items())))
    if key in _TWINS:
        return _TWINS[key]
    py = func.py_func if isinstance(func, Dispatcher) else func
    glb = dict(py.__globals__)
    twin = types.FunctionType(py.__code__, glb, py.__name__, py.__defaults__, py.__closure__)
    _TWINS[key] = twin
    for name in py.__code__.co_names:
        if name in overrides:
            glb[name] = overrides[name]
        elif _twinned(glb.get(name)):
            glb[name] = python_twin(glb[name], overrides)
    return twin


@jit(inline=True)
def error_norm(err, y, y_new, rtol, atol):
    """Return the weighted RMS norm of ``err`` (HNW I, eq. 4.11)."""
    n = err.shape[0]
    acc = 0.0
    for i in range(n):
        sc = atol[i] + rtol * max(abs(y[i]), abs(y_new[i]))
        acc += (err[i] / sc) ** 2
    return math.sqrt(acc / n)


@jit(inline=True)
def step_too_small(h_abs, t):
    """True if the step ``h_abs`` is below 10 eps |t|, zero or NaN (a zero step at t = 0
    would otherwise be retried for ever, every attempt rejected)."""
    return not (h_abs >= 10.0 * EPS * abs(t) and h_abs > 0.0)


@jit(inline=True)
def pi_factor(err, log_prev, k, rejected):
    """Return ``(factor, log_next)``: the step-size factor of the PI controller for error
    order ``k - 1``, given ``log_prev = log(max(err_prev, ERR_FLOOR))``, and that log for
    this step's ``err``, which the next step passes back.

    One exp and one log per step (carrying the log, not the error) instead of two pow
    calls: the transcendental functions were ~8% of a small explicit step.
    """
    log_next = LOG_ERR_FLOOR
    if err == 0.0:
        fac = MAX_FACTOR
    else:
        lg = math.log(err)  # err > 0 here
        if err >= ERR_FLOOR:
            log_next = lg
        fac = SAFETY * math.exp((BETA2 * log_prev - BETA1 * lg) / k)
    fac = min(MAX_FACTOR, max(MIN_FACTOR, fac))
    if rejected and fac > 1.0:
        fac = 1.0
    return fac, log_next


@jit()
def _rms_scaled(x, y0, rtol, atol):
    """Return sqrt(mean((x / (atol + rtol |y0|))**2))."""
    acc = 0.0
    for i in range(x.shape[0]):
        acc += (x[i] / (atol[i] + rtol * abs(y0[i]))) ** 2
    return math.sqrt(acc / x.shape[0])


@jit()
def _axpy(y, a, x, out):
    """Set ``out = y + a x``."""
    for i in range(y.shape[0]):
        out[i] = y[i] + a * x[i]


@jit(twin=True)
def initial_step(rhs, t0, y0, f0, p, direction, order, rtol, atol, max_step, work, f1):
    """Return a starting step |h| (Hairer, Norsett & Wanner I, II.4, p. 169).

    Uses one evaluation of ``rhs`` (into ``f1``); ``work`` is scratch of shape (n,).
    """
    d0 = _rms_scaled(y0, y0, rtol, atol)
    d1 = _rms_scaled(f0, y0, rtol, atol)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    if not h0 > 0.0:  # f0 overflowed the scaled norm (d1 = inf): HNW's fallback; the step
        h0 = 1e-6  # from d2 below is then 0, and the solve fails with a step underflow
    h0 = min(h0, max_step)
    _axpy(y0, direction * h0, f0, work)
    rhs(t0 + direction * h0, work, p, f1)
    _axpy(f1, -1.0, f0, work)
    d2 = _rms_scaled(work, y0, rtol, atol) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100.0 * h0, h1, max_step)


@jit()
def sorted_along(t, direction):
    """Return True if ``direction * t`` is non-decreasing and free of NaN (argument checks)."""
    for i in range(t.shape[0]):
        if t[i] != t[i]:
            return False
    for i in range(1, t.shape[0]):
        if not (direction * (t[i] - t[i - 1]) >= 0.0):
            return False
    return True


@jit(inline=True)
def poly_eval(ya, Q, s, out):
    """Evaluate ``out = ya + sum_j Q[:, j] s**(j+1)`` (Horner)."""
    n, q = Q.shape
    for i in range(n):
        acc = 0.0
        for j in range(q - 1, -1, -1):
            acc = (acc + Q[i, j]) * s
        out[i] = ya[i] + acc


# Buffers grow by doubling. The copies are explicit loops: numba compiles them in a
# fraction of the time of slice assignment, which matters for the first call.


@jit(inline=True)
def copy1(dst, src):
    """Copy the 1-D ``src`` into the first entries of ``dst``."""
    for i in range(src.shape[0]):
        dst[i] = src[i]


@jit()
def copy2(dst, src):
    """Copy the 2-D ``src`` into the leading block of ``dst``."""
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[i, j] = src[i, j]


@jit()
def grow_f1(a, need):
    """Return ``a`` (float, 1-D) or a copy with doubled capacity >= ``need``."""
    if need <= a.shape[0]:
        return a
    b = np.empty(max(need, 2 * a.shape[0]))
    copy1(b, a)
    return b


@jit()
def grow_i1(a, need):
    """Integer :func:`grow_f1`."""
    if need <= a.shape[0]:
        return a
    b = np.empty(max(need, 2 * a.shape[0]), np.int64)
    copy1(b, a)
    return b


@jit()
def grow_f2(a, need):
    """Two-dimensional :func:`grow_f1` (rows)."""
    if need <= a.shape[0]:
        return a
    b = np.empty((max(need, 2 * a.shape[0]), a.shape[1]))
    copy2(b, a)
    return b


@jit()
def grow_f3(a, need):
    """Three-dimensional :func:`grow_f1` (leading axis)."""
    if need <= a.shape[0]:
        return a
    b = np.empty((max(need, 2 * a.shape[0]), a.shape[1], a.shape[2]))
    for i in range(a.shape[0]):
        copy2(b[i], a[i])
    return b
