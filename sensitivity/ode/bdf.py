"""Variable-order (1-5), variable-step BDF with Newton iterations and Jacobian reuse.

The quasi-constant step-size implementation of Shampine & Reichelt (1997) (MATLAB ode15s,
scipy's ``BDF``) in the numerical differentiation formula (NDF) variant: the state is the
array of backward differences ``D[j] = nabla^j y_n`` (scaled by h), and a step of order k
solves for ``d = y_{n+1} - y_pred``::

    y_pred = sum_{j<=k} D[j],   psi = sum_{j=1..k} gamma_j D[j] / alpha_k,   c = h / alpha_k
    (I - c J) dy = c f(t_{n+1}, y_pred + d) - psi - d            (simplified Newton)

with ``gamma_j = sum_{i<=j} 1/i``, ``alpha_k = (1 - kappa_k) gamma_k``, the NDF constants
``kappa`` of Shampine & Reichelt (Table 1), local error ``(kappa_k gamma_k + 1/(k+1)) d``.

Jacobian and factorisation policy: the iteration matrix ``I - c J`` is refactored when c
changes (step or order change) or J is renewed. J is reused across steps, and renewed at a
refactorisation when it is ``JAC_MAX_AGE`` steps old or the iteration converged slowly
(rate above ``CRATE_SLOW``), as LSODE renews it. The Newton iteration carries its rate
estimate from step to step while the matrix stays (a new one starts again from
``CRATE_NEW_J``, as in CVODE) and stops when the last correction times that rate is below
``NLS_COEF`` of what the error test allows (LSODE's and CVODE's test; scipy's needs two
iterations in every step and an absolute tolerance: on Robertson it took twice the
evaluations of f). It fails after ``NEWTON_MAXITER`` iterations or when its contraction
rate predicts failure; a failure with a stale J renews J and retries, with a fresh J it
halves the step.
The step size changes only after k+1 steps of equal size (then the order may move by one),
or after a rejection; D is rescaled to the new step (``change_D``).

The dense output of a step is the interpolating polynomial of the differences, anchored at
t_new: ``y(t_new + s h) = D[0] + sum_j D[j] prod_{m<j} (s + m)/(m + 1)``, s in [-1, 0].

References
----------
.. [1] L. F. Shampine, M. W. Reichelt, "The MATLAB ODE suite", SIAM J. Sci. Comput. 18
   (1997) 1-22.
.. [2] E. Hairer, G. Wanner, "Solving Ordinary Differential Equations II", 2nd ed.,
   Springer (1996), III.5 and IV.8.
.. [3] A. C. Hindmarsh, "ODEPACK, a systematized collection of ODE solvers", in
   Scientific Computing, R. S. Stepleman et al. (eds.), North-Holland (1983) 55-64.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sensitivity.ode import linsolve
from sensitivity.ode.control import (
    EPS,
    MAX_FACTOR,
    MAX_STEPS,
    MIN_FACTOR,
    NEWTON_FAILED,
    NONFINITE,
    STEP_TOO_SMALL,
    SUCCESS,
    TERMINATED,
    borrow,
    hold,
    initial_step,
    jac_at,
    jit,
    rhs_at,
    step_too_small,
)
from sensitivity.ode.events import (
    accept_step,
    borrow_bufs,
    finish_trace,
    has_room,
    make_room,
    new_trace,
    step_outputs,
    wants_dense,
)
from sensitivity.ode.linsolve import factor, new_jacobian, solve_lu, solve_lu_block, workspace

MAX_ORDER = 5
NEWTON_MAXITER = 4  # as ode15s: a slow Newton is cheaper to restart with a smaller step
CRATE_NEW_J = 0.7  # the rate estimate after a refactorisation (LSODE's after a new J)
CRATE_DOWN = 0.2  # the estimate falls at most this fast per iteration (LSODE's)
# When the step size changes the Newton matrix is refactored anyway; the Jacobian is then
# renewed too if it is JAC_MAX_AGE steps old (LSODE's 20) or the iteration converged slower
# than CRATE_SLOW: a current Jacobian keeps most steps at one iteration.
JAC_MAX_AGE = 20
CRATE_SLOW = 0.2
# The iteration stops when its error is below NLS_COEF of what the error test allows
# (1 / ERROR_CONST[order] in the weighted norm), as CVODE's and LSODE's tests do, or below
# scipy's absolute newton_tol if that is looser.
NLS_COEF = 0.02
SENS_MAXITER = 8  # staggered sensitivity corrector: a linear iteration, fast with a fresh J
KAPPA = np.array([0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0])  # NDF, [1] Table 1
GAMMA = np.concatenate((np.zeros(1), np.cumsum(1.0 / np.arange(1, MAX_ORDER + 1))))
ALPHA = (1.0 - KAPPA) * GAMMA
ERROR_CONST = KAPPA * GAMMA + 1.0 / np.arange(1, MAX_ORDER + 2)


def _dense_coefficients():
    """Row j: monomial coefficients (s^1..s^5) of prod_{m<j} (s + m)/(m + 1)."""
    C = np.zeros((MAX_ORDER + 1, MAX_ORDER))
    poly = np.array([1.0])  # coefficients in increasing powers of s
    for j in range(1, MAX_ORDER + 1):
        m = j - 1
        poly = np.convolve(poly, np.array([m, 1.0]) / (m + 1))
        C[j, : len(poly) - 1] = poly[1:]
    return C


DENSE_COEF = _dense_coefficients()


@jit(inline=True)
def wrms(w, x, scale):
    """Return sqrt(mean((w * x / scale)**2))."""
    acc = 0.0
    for i in range(x.shape[0]):
        acc += (w * x[i] / scale[i]) ** 2
    return np.sqrt(acc / x.shape[0])


@jit(inline=True)
def set_scale(atol, rtol, y, scale):
    """Set ``scale = atol + rtol * |y|``."""
    for i in range(y.shape[0]):
        scale[i] = atol[i] + rtol * abs(y[i])


@jit(inline=True)
def predict(D, order, y_pred, psi):
    """Set the predictor ``sum_{j<=k} D[j]`` and ``psi = sum_j gamma_j D[j] / alpha_k``."""
    for i in range(D.shape[1]):
        yp = D[0, i]
        ps = 0.0
        for j in range(1, order + 1):
            yp += D[j, i]
            ps += GAMMA[j] * D[j, i]
        y_pred[i] = yp
        psi[i] = ps / ALPHA[order]


@jit(inline=True)
def update_D(D, d, order):
    """Differences after an accepted step with correction ``d`` ([1], section 2)."""
    for i in range(D.shape[1]):
        D[order + 2, i] = d[i] - D[order + 1, i]
        D[order + 1, i] = d[i]
        for j in range(order, -1, -1):
            D[j, i] += D[j + 1, i]


@jit(inline=True)
def newton_residual(c, f, psi, d, out):
    """Set ``out = c f - psi - d`` and return the index of a non-finite f (-1 if none)."""
    bad = -1
    for i in range(f.shape[0]):
        if bad < 0 and not np.isfinite(f[i]):
            bad = i
        out[i] = c * f[i] - psi[i] - d[i]
    return bad


@jit(inline=True)
def newton_update(y, d, dy):
    """Set ``y += dy`` and ``d += dy``."""
    for i in range(y.shape[0]):
        y[i] += dy[i]
        d[i] += dy[i]


@jit()
def compute_R(order, factor, M):
    """Fill ``M[:order+1, :order+1]`` with the matrix R of [1] (eq. 2.3) for ratio ``factor``."""
    for j in range(order + 1):
        M[0, j] = 1.0
    for i in range(1, order + 1):
        M[i, 0] = 0.0
        for j in range(1, order + 1):
            M[i, j] = M[i - 1, j] * (i - 1 - factor * j) / i
    return M


def _u_table():
    """R(order, 1) for every order, computed once (change_D multiplies by it)."""
    U = np.zeros((MAX_ORDER + 1, MAX_ORDER + 1, MAX_ORDER + 1))
    for k in range(MAX_ORDER + 1):
        getattr(compute_R, "py_func", compute_R)(k, 1.0, U[k])
    return U


U_TABLE = _u_table()


@jit()
def change_D(D, order, factor, work):
    """Rescale the differences ``D[:order+1]`` to a step size multiplied by ``factor``.

    ``work`` (3, MAX_ORDER + 1, MAX_ORDER + 1) is scratch: three small allocations per step
    size change were a tenth of a small stiff solve (Robertson).
    """
    R, RU, col = work[0], work[1], work[2, 0]
    compute_R(order, factor, R)
    for k in range(order + 1):
        for j in range(order + 1):
            acc = 0.0  # summed over m in the same order as before: bitwise the same D
            for m in range(order + 1):
                acc += R[k, m] * U_TABLE[order, m, j]
            RU[k, j] = acc
    for i in range(D.shape[1]):
        for j in range(order + 1):
            acc = 0.0
            for k in range(order + 1):
                acc += RU[k, j] * D[k, i]
            col[j] = acc
        for j in range(order + 1):
            D[j, i] = col[j]


@jit(twin=True)
def newton(rhs, t_new, y_pred, c, psi, M, piv, scale, p, tol, crate, strict, y, d, f, dy):
    """Simplified Newton iteration for the BDF stage; returns (converged, n_iter, bad, crate).

    ``crate`` is the estimate of the iteration's convergence rate, carried from step to step
    (for one iteration matrix) as LSODE and CVODE carry theirs: it has converged when the
    last correction times ``min(1, 1.5 crate)`` is below ``tol``. With a known rate one
    iteration can suffice; scipy's test, which needs the rate of the current step, always
    takes two (Robertson: 1054 evaluations in 381 steps that way). ``strict``: scipy's test instead,
    ``rate / (1 - rate) * |dy| < tol`` with the rate of this step (the discrete adjoint's
    forward pass: it differentiates exactly solved correctors). Divergence is scipy's test.
    ``bad`` is the index of a non-finite component of f (-1 if none). ``dy`` is scratch.
    """
    for i in range(y.shape[0]):  # not y[:] = y_pred: its shape check compiles string formatting
        d[i] = 0.0
        y[i] = y_pred[i]
    dy_norm_old = -1.0
    for k in range(NEWTON_MAXITER):
        rhs(t_new, y, p, f)
        bad = newton_residual(c, f, psi, d, dy)
        if bad >= 0:
            return False, k + 1, bad, crate
        solve_lu(M, piv, dy, dy)
        dy_norm = wrms(1.0, dy, scale)
        rate = dy_norm / dy_norm_old if dy_norm_old > 0.0 else -1.0
        if rate >= 0.0:
            if rate >= 1.0 or rate ** (NEWTON_MAXITER - k) / (1.0 - rate) * dy_norm > tol:
                return False, k + 1, -1, crate
            crate = max(CRATE_DOWN * crate, rate)
        newton_update(y, d, dy)
        if strict:
            if dy_norm == 0.0 or (rate >= 0.0 and rate / (1.0 - rate) * dy_norm < tol):
                return True, k + 1, -1, crate
        elif dy_norm * min(1.0, 1.5 * crate) <= tol:
            return True, k + 1, -1, crate
        dy_norm_old = dy_norm
    return False, NEWTON_MAXITER, -1, crate


@jit(twin=True)
def sens_corrector(sens, t_new, Y, Y_pred, c, psi, M, piv, scale, P, d, F, dY, n, tol, srate=-1.0):
    """Staggered corrector of the sensitivities (CVODES' staggered method).

    With y converged in ``Y[:n]``, solve the linear BDF equations of the sensitivities
    ``S = Y[n:]`` (row-major (n, K)), ``(I - c J) d_S = c (J S_pred + f_p) - psi_S`` by
    iterating ``d_S += M^-1 (c (J S + f_p) - psi_S - d_S)`` with the factorised Newton
    matrix ``M``; ``J S + f_p`` comes from one dual evaluation ``sens`` per iteration. With
    a current J one iteration solves it; a stale J needs a few. Returns (converged, evals,
    srate).

    ``srate`` >= 0: the iteration's rate estimate carried between steps, as :func:`newton`
    carries ``crate`` (CVODES keeps one for the sensitivities too): one iteration whose
    correction times ``min(1, 1.5 srate)`` is below ``tol`` converges. Negative (TR-BDF2,
    BDF with ``nls_coef = 0``): the rate of the current step only, as y's strict test.
    """
    N = Y.shape[0]
    K = (N - n) // n
    r = dY[:n]  # scratch: y's part of dY is free once y has converged (no allocation)
    for i in range(n, N):
        d[i] = 0.0
        Y[i] = Y_pred[i]
    old = -1.0
    for it in range(SENS_MAXITER):
        sens(t_new, Y, P, F)
        for j in range(n, N):
            dY[j] = c * F[j] - psi[j] - d[j]
        solve_lu_block(M, piv, dY[n:], K, r)  # the K columns of S together
        acc = 0.0
        for i in range(n, N):
            acc += (dY[i] / scale[i]) ** 2
            Y[i] += dY[i]
            d[i] += dY[i]
        norm = np.sqrt(acc / (N - n))
        if not np.isfinite(norm):
            return False, it + 1, srate
        if norm == 0.0:
            return True, it + 1, srate
        # linear iteration: the remaining error is about rate / (1 - rate) * norm
        rate = norm / old if old > 0.0 else 0.0
        if rate >= 0.9:
            return False, it + 1, srate  # too slow with this (stale) J: the caller renews it
        if srate >= 0.0:  # y's test (as CVODES does for the sensitivities)
            if old > 0.0:
                srate = max(CRATE_DOWN * srate, rate)
            if norm * min(1.0, 1.5 * srate) <= tol:
                return True, it + 1, srate
        elif (old > 0.0 and rate / (1.0 - rate) * norm <= tol) or norm <= 1e-3 * tol:
            return True, it + 1, srate
        old = norm
    return False, SENS_MAXITER, srate


@jit()
def choose_order(D, order, max_order, err_norm, scale, safety, n_err):
    """Return (new order, step factor) from the error estimates of orders k-1, k, k+1.

    The estimate for order k is ``ERROR_CONST[k] * D[k + 1]`` (after the update of D, the
    order k+1 difference is ``D[order + 2]``), as in [1]; the norm runs over the first
    ``n_err`` components.
    """
    best, new_order = -1.0, order
    for k in range(max(order - 1, 1), min(order + 1, max_order) + 1):
        e = err_norm if k == order else wrms(ERROR_CONST[k], D[k + 1, :n_err], scale[:n_err])
        fac = np.inf if e == 0.0 else e ** (-1.0 / (k + 1))
        if fac > best:
            best, new_order = fac, k
    return new_order, min(MAX_FACTOR, safety * best)


@jit(inline=True)
def bdf_dense(D, order, Q):
    """Set ``Q`` so that y(t_new + s h) = D[0] + sum_k Q[:, k] s**(k+1)."""
    for i in range(D.shape[1]):
        for k in range(Q.shape[1]):
            acc = 0.0
            for j in range(k + 1, order + 1):
                acc += DENSE_COEF[j, k] * D[j, i]
            Q[i, k] = acc


@jit(twin=True)
def bdf_solve(fns, g, t_span, y0, p, tol, opts, t_eval, ev_dir, ev_term, P):
    """Integrate ``y' = rhs(t, y, p)`` with variable-order BDF (NDF); see the module doc.

    Arguments as the explicit kernel's (:func:`sensitivity.ode.explicit.rk_kernel`), with
    ``fns = (rhs, jac, sens)`` (compiled: their addresses, int64 (6,)), the Jacobian ``jac(t,
    y, p, J)`` and ``g`` None without events;
    ``opts = [first_step (0 = auto), max_step, max_steps, save_steps, record, max_order,
    min_order, n_y, n_err, nls_coef, kl, ku]`` (``nls_coef``: see :class:`BDF`; ``kl,
    ku``: the band of ``jac``'s storage, -1 for dense;
    :func:`sensitivity.ode.linsolve.workspace`).

    Forward sensitivities: with ``0 < n_y < len(y0)`` the state is ``[y (n_y), S (n_y, K)]``,
    ``sens(t, Y, P, dY)`` its right-hand side (:mod:`sensitivity.sens.kernels`) and ``P``
    its parameters; y runs the Newton iteration with ``rhs``, ``p`` and ``jac``, then
    :func:`sens_corrector` gives S with the same factorisation. The error norm covers the
    first ``n_err`` components. Without sensitivities pass ``sens = rhs`` and ``P = p``.
    Returns the trace tuple (``TRACE_T`` in :mod:`sensitivity.ode.control`).
    """
    rhs, jac, sens = rhs_at(fns, 0), jac_at(fns, 1), rhs_at(fns, 2)
    N = y0.shape[0]
    n = int(opts[7]) if opts[7] > 0.0 else N
    n_err = int(opts[8]) if opts[8] > 0.0 else N
    nls_coef = opts[9]
    strict = nls_coef <= 0.0  # scipy's corrector test and Jacobian policy (see newton)
    rtol, atol = tol[0], tol[1:]
    t0, t_end = t_span[0], t_span[1]
    direction = 1.0 if t_end >= t0 else -1.0
    max_step, max_steps, save_steps = opts[1], int(opts[2]), opts[3] > 0.0
    record, max_order, min_order = opts[4] > 0.0, int(opts[5]), int(opts[6])
    newton_tol = max(10.0 * EPS / rtol, min(0.03, rtol**0.5))
    counts = np.zeros(5, np.int64)  # nfev, njev, nlu, nsteps, nreject
    info = np.zeros(2)
    # work vectors as borrowed views (no reference counting per use; owners held to the end)
    w_own, Q_own, D_own = np.zeros((8, N)), np.zeros((N, MAX_ORDER)), np.zeros((MAX_ORDER + 3, N))
    w, Q, D = borrow(w_own), borrow(Q_own), borrow(D_own)
    cwork_own = np.empty((3, MAX_ORDER + 1, MAX_ORDER + 1))  # change_D's scratch
    cwork = borrow(cwork_own)
    f, y, d, dy, work, y_pred, psi, scale = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
    p, P, atol, t_eval = borrow(p), borrow(P), borrow(atol), borrow(t_eval)
    nev = ev_dir.shape[0]
    g_old, g_work = np.empty(nev), np.empty(nev)
    owners, ks_own = new_trace(t0, y0, t_eval, save_steps, ev_dir.shape[0], MAX_ORDER)
    bufs, ks = borrow_bufs(owners), borrow(ks_own)  # owners: only where they change
    sens(t0, y0, P, f)
    if g is not None:  # a compile-time branch: None prunes the event code
        rhs_at(g, 0)(t0, y0, p, g_old)
    counts[0] = 1
    h_abs = opts[0]
    if h_abs <= 0.0:  # from the controlled components only: "partial" keeps y's steps
        h_abs = initial_step(
            sens if n_err == N else rhs,
            t0,
            y0[:n_err],
            f[:n_err],
            P if n_err == N else p,
            direction,
            1,
            rtol,
            atol[:n_err],
            max_step,
            work[:n_err],
            dy[:n_err],
        )
        counts[0] += 1
    h_abs = min(h_abs, max_step)
    for i in range(N):  # loops: a row assignment's shape check compiles string formatting
        D[0, i] = y0[i]
        D[1, i] = f[i] * h_abs * direction
    J_own, M_own, piv_own = workspace(n, opts)  # dense or banded (opts[-2:], see linsolve)
    J, M, piv = borrow(J_own), borrow(M_own), borrow(piv_own)
    J = new_jacobian(jac, t0, y0[:n], p, J)
    counts[1] = 1
    current_jac, lu_valid, order, n_equal, t = True, False, 1, 0, t0
    crate, srate, jac_age = CRATE_NEW_J, CRATE_NEW_J, 0  # y's and the sensitivities' rates
    status, why = SUCCESS, 0  # why: 1 Newton failure, 2 non-finite f
    while True:  # again only after make_room: owners is not carried by the step loop
        # (a tuple reassigned in a loop counts its nine references at every back edge)
        while direction * (t - t_end) < 0.0 and has_room(bufs, ks, save_steps, record, nev):
            if counts[3] >= max_steps or step_too_small(h_abs, t):
                status = (
                    MAX_STEPS
                    if counts[3] >= max_steps
                    else (STEP_TOO_SMALL, NEWTON_FAILED, NONFINITE)[why]
                )
                info[0] = t if status != NONFINITE else info[0]
                break
            if h_abs > max_step:
                change_D(D, order, max_step / h_abs, cwork)
                h_abs, n_equal, lu_valid = max_step, 0, False
            t_new = t + direction * h_abs
            if direction * (t_new - t_end) > 0.0:
                change_D(D, order, abs(t_end - t) / h_abs, cwork)
                n_equal, lu_valid, t_new = 0, False, t_end
            h = t_new - t
            h_abs = abs(h)
            predict(D, order, y_pred, psi)
            set_scale(atol, rtol, y_pred, scale)
            c = h / ALPHA[order]
            while True:
                if not lu_valid:
                    if not (strict or current_jac) and (
                        jac_age >= JAC_MAX_AGE or crate > CRATE_SLOW
                    ):
                        J = new_jacobian(jac, t_new, y_pred[:n], p, J)
                        counts[1] += 1
                        current_jac, jac_age = True, 0
                    # a new matrix converges at an unknown rate: with the old estimate kept
                    # across a step-size change, a stale J once passed a corrector 1e14
                    # tolerances off (Robertson, rtol 1e-3); CVODE resets it here too
                    crate = srate = CRATE_NEW_J
                    M = factor(J, c, M, piv)
                    counts[2] += 1
                    lu_valid = True
                ok, n_iter, bad, crate = newton(
                    rhs,
                    t_new,
                    y_pred[:n],
                    c,
                    psi[:n],
                    M,
                    piv,
                    scale[:n],
                    p,
                    newton_tol if strict else max(newton_tol, nls_coef / ERROR_CONST[order]),
                    crate,
                    strict,
                    y[:n],
                    d[:n],
                    f[:n],
                    dy[:n],
                )
                counts[0] += n_iter
                if ok and n < N:
                    ok, n_iter, srate = sens_corrector(
                        sens,
                        t_new,
                        y,
                        y_pred,
                        c,
                        psi,
                        M,
                        piv,
                        scale,
                        P,
                        d,
                        f,
                        dy,
                        n,
                        newton_tol if strict else max(newton_tol, nls_coef / ERROR_CONST[order]),
                        -1.0 if strict else srate,
                    )
                    counts[0] += n_iter
                if ok or current_jac or bad >= 0:
                    break
                J = new_jacobian(jac, t_new, y_pred[:n], p, J)
                counts[1] += 1
                current_jac, lu_valid, jac_age = True, False, 0
            if not ok:
                why = 2 if bad >= 0 else 1
                if bad >= 0:
                    info[0], info[1] = t_new, bad
                h_abs *= 0.5
                change_D(D, order, 0.5, cwork)
                n_equal, lu_valid = 0, False
                counts[4] += 1
                continue
                # scipy's safety factor, counting at least two iterations: rewarding the steps
            # that converge in one with 10% longer steps doubled the global error at tight
            # tolerances (Robertson, rtol 1e-8)
            safety = 0.9 * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + max(n_iter, 2))
            set_scale(atol, rtol, y, scale)
            err_norm = wrms(ERROR_CONST[order], d[:n_err], scale[:n_err])
            if err_norm > 1.0:
                fac = max(MIN_FACTOR, safety * err_norm ** (-1.0 / (order + 1)))
                h_abs *= fac
                change_D(D, order, fac, cwork)
                n_equal, lu_valid, why = 0, False, 0
                counts[4] += 1
                continue
            why, current_jac = 0, False
            jac_age += 1
            update_D(D, d, order)
            if wants_dense(record, nev, t_eval, ks, direction, t_new):
                bdf_dense(D, order, Q)  # only when someone reads the interpolant
            terminal, t_stop = False, t_new
            if g is not None:
                t_stop, terminal = accept_step(
                    g,
                    p,
                    ev_dir,
                    ev_term,
                    g_old,
                    t,
                    t_new,
                    t_new,
                    h,
                    D[0],
                    Q,
                    D[0],
                    t_eval,
                    save_steps,
                    record,
                    bufs,
                    ks,
                    work,
                    g_work,
                )
            else:  # no events (pruned at compile time): outputs inline, no buffer-tuple call
                step_outputs(bufs, ks, save_steps, record, t_eval, t_new, t_new, h, D[0], Q, D[0])
            counts[3] += 1
            t = t_new
            if terminal:
                status = TERMINATED
                break
            n_equal += 1
            if n_equal < order + 1:
                continue
            order, fac = choose_order(D, order, max_order, err_norm, scale, safety, n_err)
            if order < min_order:  # only to test a fixed order (see BDF.min_order)
                order += 1
            h_abs *= fac
            change_D(D, order, fac, cwork)
            n_equal, lu_valid = 0, False
        if status != SUCCESS or not direction * (t - t_end) < 0.0:
            break
        owners = make_room(owners, ks, save_steps, record, nev)
        bufs = borrow_bufs(owners)
    hold(w_own, Q_own, D_own, cwork_own, J_own, M_own, piv_own)
    return finish_trace(status, info, counts, owners, ks_own)


@dataclass(frozen=True)
class BDF(linsolve.StiffMethod):
    """Method entry of :data:`sensitivity.ode.solve.METHODS` for :func:`bdf_solve`."""

    anchor_at_end = True
    takes_sens = True

    max_order: int = MAX_ORDER
    min_order: int = 1  # > 1 forces the order up to it as soon as possible (for tests)
    # the corrector's tolerance as a fraction of the error test's (module docstring); 0:
    # scipy's test and Jacobian policy, every corrector solved to scipy's newton_tol
    nls_coef: float = NLS_COEF

    def kernel(self):
        return bdf_solve

    def extra_opts(self, n_y, n_err):
        return [
            float(self.max_order),
            float(self.min_order),
            float(n_y),
            float(n_err),
            float(self.nls_coef),
        ]

    def exact_corrector(self):
        """This method with ``nls_coef = 0`` (one object per configuration).

        The discrete adjoint (:mod:`sensitivity.sens.bdf_adjoint`) is the transpose of the
        step map with every corrector solved exactly; its forward pass uses this, so that
        the computed solution is that map's to a small fraction of the tolerance and the
        gradient is the derivative of the computed objective.
        """
        return _EXACT.setdefault(self, replace(self, nls_coef=0.0))


_EXACT = {}
