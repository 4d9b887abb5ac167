"""Verification helpers: check a derivative against an independent one.

These ship with the library so that users can check their own models the way
the library's tests check it:

* :func:`check_derivative`: a Jacobian (ours or yours) against complex step
  (for analytic functions) or central differences with step selection;
* :func:`taylor_test`: the first-order Taylor remainder must fall like eps**2
  (rate 2) when the gradient is right, like eps (rate 1) when it is wrong;
* :func:`dot_product_test`: a forward operator and its adjoint must satisfy
  ``<J v, w> = <v, J^T w>``;
* :func:`verify_gradient`: all of the above for a scalar function, as one
  readable report.

All take seeded random directions (``seed=``) and print nothing unless asked.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from sensitivity.ad import api

_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class DerivativeCheck:
    """Result of :func:`check_derivative`.

    Attributes
    ----------
    method : str
        ``"complex-step"`` or ``"central-difference"``.
    errors : ndarray, shape (n_directions,)
        ``|J v - ref| / max(|ref|, atol)`` per random direction (norms).
    max_error : float
    passed : bool
        ``max_error <= rtol``.
    """

    method: str
    errors: np.ndarray
    max_error: float
    passed: bool


def check_derivative(
    f, x, jac=None, *, method="auto", n_directions=3, rtol=None, atol=1e-12, seed=0
):
    """Check a Jacobian of ``f`` at ``x`` against an independent derivative.

    Parameters
    ----------
    f : callable
        ``f(x) -> ndarray`` of shape s_out.
    x : array_like, shape s_in
    jac : ndarray of shape s_out + s_in, or callable, optional
        The Jacobian to check, or ``jac(x)`` returning it. Default: the
        library's own, :func:`sensitivity.jacobian`.
    method : {"auto", "complex", "fd"}
        ``"complex"``: complex step ``Im f(x + i h v) / h`` with h = 1e-30,
        exact to round-off for analytic ``f``. ``"fd"``: central differences,
        the step chosen from a sweep where two successive estimates agree
        best. ``"auto"`` uses complex step when ``f`` accepts and returns complex
        numbers and agrees with central differences along one direction
        (non-analytic pieces such as ``abs`` break that), else differences.
    n_directions : int
        Number of random directions ``v``.
    rtol : float, optional
        Pass threshold; 1e-10 for complex step, 1e-6 for differences.
    atol : float
        Floor of the reference norm in the relative error.
    seed : int
        Seed of the random directions.

    Returns
    -------
    DerivativeCheck
    """
    x = np.asarray(x, dtype=float)
    if method not in ("auto", "complex", "fd"):
        raise ValueError(f"method must be 'auto', 'complex' or 'fd', got {method!r}")
    J = api.jacobian(f, x) if jac is None else (jac(x) if callable(jac) else np.asarray(jac))
    J = np.reshape(J, (-1, x.size))
    rng = np.random.default_rng(seed)
    if method == "auto":
        method = "complex" if _accepts_complex(f, x) else "fd"
    errors = []
    for _ in range(n_directions):
        v = rng.standard_normal(x.shape)
        ref = _complex_step(f, x, v) if method == "complex" else _central_difference(f, x, v)
        got = J @ v.ravel()
        errors.append(np.linalg.norm(got - ref.ravel()) / max(np.linalg.norm(ref), atol))
    errors = np.array(errors)
    name = "complex-step" if method == "complex" else "central-difference"
    rtol = (1e-10 if method == "complex" else 1e-6) if rtol is None else rtol
    return DerivativeCheck(name, errors, float(errors.max()), bool(errors.max() <= rtol))


def _accepts_complex(f, x):
    """True if complex step is valid for ``f`` at ``x``.

    ``f`` must take and return complex numbers, and along one direction the
    complex step must agree with central differences: non-analytic pieces
    (``abs``, comparisons) break that agreement even when they accept complex.
    """
    v = np.random.default_rng(12345).standard_normal(x.shape)
    try:
        with np.errstate(all="ignore"):
            y = np.asarray(f(x + 1e-30j * v))
    except (TypeError, ValueError):
        return False
    if not np.iscomplexobj(y):
        return False
    cs = np.imag(y) / 1e-30
    fd = _central_difference(f, x, v)
    return bool(np.linalg.norm(cs - fd) <= 1e-5 * max(np.linalg.norm(fd), 1e-12))


def _complex_step(f, x, v, h=1e-30):
    return np.imag(np.asarray(f(x + 1j * h * v))) / h


def _central_difference(f, x, v):
    """Central difference along ``v``, the step picked from a sweep.

    Steps h = 1e-2 ... 1e-8 (relative to the size of x); the estimate kept is
    the one that agrees best with its neighbour at h/sqrt(10), which balances
    truncation (large h) against cancellation (small h).
    """
    scale = max(1.0, float(np.max(np.abs(x))))
    steps = scale * 10.0 ** -np.arange(2.0, 8.01, 0.5)
    est = [(np.asarray(f(x + h * v)) - np.asarray(f(x - h * v))) / (2 * h) for h in steps]
    gaps = [np.linalg.norm(a - b) for a, b in zip(est[:-1], est[1:])]
    return est[int(np.argmin(gaps))]


@dataclass(frozen=True)
class TaylorResult:
    """Result of :func:`taylor_test`.

    Attributes
    ----------
    eps : ndarray, shape (steps,)
        Perturbation sizes.
    remainders : ndarray, shape (steps,)
        ``|f(x + eps d) - f(x) - eps df(x)[d]|``.
    rates : ndarray, shape (steps - 1,)
        ``log2`` of successive remainder ratios; 2 is correct, 1 means the
        derivative is wrong. NaN where the remainder reached round-off.
    min_rate : float
        Smallest rate above the round-off floor.
    passed : bool
        ``min_rate >= tol_rate``.
    """

    eps: np.ndarray
    remainders: np.ndarray
    rates: np.ndarray
    min_rate: float
    passed: bool


def taylor_test(
    f, x, grad=None, *, jvp=None, direction=None, eps0=1e-2, steps=6, seed=0, tol_rate=1.9
):
    """Check a derivative by the convergence rate of the Taylor remainder.

    Parameters
    ----------
    f : callable
        ``f(x) -> float`` or ndarray.
    x : array_like, shape s
    grad : ndarray of shape s, or callable, optional
        The gradient of a scalar ``f`` at ``x`` (or ``grad(x)``). Default: the
        library's :func:`sensitivity.grad` (scalar ``f``) or
        :func:`sensitivity.jvp` (vector ``f``).
    jvp : callable, optional
        ``jvp(x, d) -> df(x)[d]`` for vector-valued ``f`` (instead of ``grad``).
    direction : ndarray of shape s, optional
        Perturbation direction; random (seeded) by default, scaled like ``x``.
    eps0 : float
        Largest perturbation; each step halves it.
    steps : int
        Number of perturbations.
    seed : int
    tol_rate : float
        Smallest acceptable rate.

    Returns
    -------
    TaylorResult

    Warns
    -----
    UserWarning
        When the remainder reaches round-off before two rates can be measured
        (take a larger ``eps0``).
    """
    x = np.asarray(x, dtype=float)
    if steps < 3:
        raise ValueError(f"steps must be at least 3, got {steps}")
    d = direction
    if d is None:
        d = np.random.default_rng(seed).standard_normal(x.shape) * np.maximum(np.abs(x), 1.0)
    d = np.asarray(d, dtype=float)
    if d.shape != x.shape:
        raise ValueError(f"direction must have the shape of x, {x.shape}; got {d.shape}")
    f0 = np.asarray(f(x))
    if jvp is not None:
        df = np.asarray(jvp(x, d))
    elif grad is not None:
        g = grad(x) if callable(grad) else grad
        df = np.sum(np.asarray(g) * d)
    else:
        df = api.grad(f, x).ravel() @ d.ravel() if f0.size == 1 else api.jvp(f, x, d)[1]
    eps = eps0 / 2.0 ** np.arange(steps)
    rem = np.array([np.linalg.norm(np.asarray(f(x + e * d)) - f0 - e * df) for e in eps])
    # Below ~1e3 ulp of f the remainder is round-off, not truncation.
    floor = 1e3 * _EPS * max(float(np.linalg.norm(f0)), 1e-300)
    rates = np.log2(rem[:-1] / rem[1:])
    rates[rem[1:] <= floor] = np.nan
    valid = rates[np.isfinite(rates)]
    if valid.size < 2:
        warnings.warn("taylor_test: the remainder reached round-off; increase eps0", stacklevel=2)
    min_rate = float(valid.min()) if valid.size else float("nan")
    return TaylorResult(eps, rem, rates, min_rate, bool(valid.size and min_rate >= tol_rate))


@dataclass(frozen=True)
class DotProductResult:
    """Result of :func:`dot_product_test`: ``<J v, w>`` vs ``<v, J^T w>``."""

    lhs: float
    rhs: float
    rel_error: float
    passed: bool


def dot_product_test(
    forward, adjoint, v=None, w=None, *, shape_in=None, seed=0, rtol=1e-12, atol=None
):
    """Check that ``adjoint`` is the transpose of the linear map ``forward``.

    Parameters
    ----------
    forward : callable
        ``forward(v) -> J v``.
    adjoint : callable
        ``adjoint(w) -> J^T w``.
    v : ndarray, optional
        Input vector; random (seeded) of shape ``shape_in`` by default.
    w : ndarray, optional
        Output vector; random of the shape of ``forward(v)`` by default.
    shape_in : tuple of int, optional
        Required when ``v`` is not given.
    seed : int
    rtol, atol : float
        Pass if ``|lhs - rhs| <= rtol * max(|lhs|, |rhs|) + atol``. ``atol``
        defaults to round-off of the products, ``1e3 * eps * (|w| |Jv| +
        |v| |J^T w|)``, so that two sides that are both zero to round-off
        (a direction in the null space) pass.

    Returns
    -------
    DotProductResult
    """
    rng = np.random.default_rng(seed)
    if v is None:
        if shape_in is None:
            raise ValueError("dot_product_test: give v or shape_in")
        v = rng.standard_normal(shape_in)
    Jv = np.asarray(forward(v))
    if w is None:
        w = rng.standard_normal(Jv.shape)
    JTw = np.asarray(adjoint(w))
    if JTw.shape != np.shape(v):
        raise ValueError(
            f"adjoint(w) has shape {JTw.shape}, expected the shape of v, {np.shape(v)}"
        )
    lhs = complex(np.vdot(w, Jv)).real
    rhs = complex(np.vdot(JTw, v)).real
    if atol is None:
        atol = (
            1e3
            * _EPS
            * (np.linalg.norm(w) * np.linalg.norm(Jv) + np.linalg.norm(v) * np.linalg.norm(JTw))
        )
    gap = abs(lhs - rhs)
    rel = gap / max(abs(lhs), abs(rhs), 1e-300)
    return DotProductResult(lhs, rhs, rel, bool(gap <= rtol * max(abs(lhs), abs(rhs)) + atol))


@dataclass(frozen=True)
class GradientReport:
    """Result of :func:`verify_gradient`.

    Attributes
    ----------
    value : float
        ``f(x)``.
    grad : ndarray
        The gradient under test.
    errors : dict of str to float
        Relative error of ``grad`` against each independent derivative
        (``"forward"``: forward-mode duals; ``"fd"``/``"complex"``: directional
        differences along random directions).
    taylor : TaylorResult
    passed : bool
    """

    value: float
    grad: np.ndarray
    errors: dict
    taylor: TaylorResult
    passed: bool
    sweep: dict | None = None

    def __str__(self):
        lines = [f"gradient check at f(x) = {self.value:.6g}"]
        lines += [f"  vs {k:<18s} relative error {v:.2e}" for k, v in self.errors.items()]
        rates = ", ".join("-" if not np.isfinite(r) else f"{r:.2f}" for r in self.taylor.rates)
        lines.append(f"  Taylor remainder rates (2 is right): {rates}")
        if self.sweep:
            lines.append("  gradient error against the tightest solve, by rtol:")
            lines += [f"    rtol {r:.0e}: {e:.2e}" for r, e in self.sweep.items()]
        lines.append("  PASSED" if self.passed else "  FAILED")
        return "\n".join(lines)


def verify_gradient(f, x, grad=None, *, rtol=None, seed=0, verbose=True, rtols=(1e-4, 1e-6, 1e-8)):
    """Check the gradient of a scalar function or objective every independent way at once.

    For a function: compares ``grad`` (default: reverse mode,
    :func:`sensitivity.grad`) with forward-mode duals and with complex-step or
    central differences along random directions, and runs :func:`taylor_test`.

    For an objective (:class:`~sensitivity.inverse.objective.AbstractObjective`):
    compares its gradient ``f.jac(x)`` with central differences of ``f.fun``
    and, for an ODE :class:`~sensitivity.Objective`, with the gradient by
    forward sensitivities and by the discrete adjoint (explicit methods), runs
    the Taylor test, and solves again at each of ``rtols`` to show the gradient
    error falling with the tolerance.

    Parameters
    ----------
    f : callable or AbstractObjective
        ``f(x) -> float``, or an objective (x in its optimiser variables).
    x : array_like, shape s
    grad : ndarray of shape s, or callable, optional
        The gradient to check (or ``grad(x)``); functions only.
    rtol : float, optional
        Pass threshold on the relative errors (1e-6 for functions, 1e-4 for
        objectives, whose adaptive solves make differences noisy).
    seed : int
    verbose : bool
        Print the report.
    rtols : sequence of float
        Tolerances of the sweep (ODE objectives).

    Returns
    -------
    GradientReport
    """
    from sensitivity.inverse.objective import AbstractObjective

    if isinstance(f, AbstractObjective):
        report = _verify_objective(f, x, 1e-4 if rtol is None else rtol, seed, rtols)
    else:
        report = _verify_function(f, x, grad, 1e-6 if rtol is None else rtol, seed)
    if verbose:
        print(report)
    return report


def _verify_function(f, x, grad, rtol, seed):
    x = np.asarray(x, dtype=float)
    g = api.grad(f, x) if grad is None else np.asarray(grad(x) if callable(grad) else grad)
    if g.shape != x.shape:
        raise ValueError(f"grad must have the shape of x, {x.shape}; got {g.shape}")
    fwd = api.jacobian(f, x, mode="forward").reshape(x.shape)
    errors = {"forward mode": _rel(g, fwd)}
    check = check_derivative(f, x, g.reshape((1,) + x.shape), seed=seed, rtol=rtol)
    errors[check.method] = check.max_error
    taylor = taylor_test(f, x, g, seed=seed)
    passed = all(e <= rtol for e in errors.values()) and taylor.passed
    return GradientReport(float(np.asarray(f(x))), g, errors, taylor, passed)


def _verify_objective(obj, x, rtol, seed, rtols):
    x = np.asarray(x, dtype=float)
    value, g = obj.fun_and_jac(x)
    errors, sweep = {}, None
    theta = obj.to_theta(x)
    d = obj.transform.derivative(x)
    by = getattr(obj, "gradient_by", None)
    if by is not None:
        for kind in ("forward", "adjoint"):
            try:
                errors[f"{kind} sensitivities" if kind == "forward" else "discrete adjoint"] = _rel(
                    g, by(kind, theta) * d
                )
            except ValueError:  # no adjoint for an implicit method
                pass
    check = check_derivative(obj.fun, x, g.reshape(1, -1), method="fd", seed=seed, rtol=rtol)
    errors["central differences"] = check.max_error
    taylor = taylor_test(obj.fun, x, g, seed=seed, eps0=1e-2, steps=4, tol_rate=1.8)
    if by is not None and rtols:
        tight = min(rtols) * 1e-2
        ref = obj.with_tolerances(tight, tight * 1e-2).with_transform(obj.transform).jac(x)
        sweep = {
            r: _rel(obj.with_tolerances(r, r * 1e-2).with_transform(obj.transform).jac(x), ref)
            for r in sorted(rtols, reverse=True)
        }
    passed = all(e <= rtol for e in errors.values()) and taylor.passed
    return GradientReport(float(value), g, errors, taylor, passed, sweep)


def _rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))
