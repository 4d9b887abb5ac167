"""TR-BDF2, an L-stable ESDIRK of order 2 with an embedded order-3 estimate.

The one-step stiff method of Bank et al. (1985) in the ESDIRK form of Hosea & Shampine
(1996) (MATLAB ode23tb). With gamma = 2 - sqrt(2), d = gamma / 2, w = sqrt(2) / 4::

    c | A              0     |  0
      |              gamma   |  d   d
      |                1     |  w   w   d
    --+--                ----+-------------
      | b (= last row, stiffly accurate)      w   w   d
      | b_hat (order 3)          (1-w)/3  (3w+1)/3  d/3

Both implicit stages share the iteration matrix ``I - d h J``: one LU per step size. Each
stage ``z = base + d h f(t + c h, z)`` is solved by simplified Newton (as in
:mod:`sensitivity.ode.bdf`); the stage derivative is then taken as ``(z - base) / (d h)``,
which saves an evaluation and filters Newton's residual. The local error estimate
``h sum (b_hat - b) f`` is passed through ``(I - d h J)^{-1}`` (Hosea & Shampine, section 3)
so that it stays bounded on stiff components. The step keeps its size (and its LU) when the
controller would change it by less than 20 %. Dense output: the cubic Hermite interpolant of
y and f at both ends (order 3, free).

Forward sensitivities (state ``[y, S]``, :mod:`sensitivity.sens.forward`): each stage runs
Newton for y alone, then the staggered corrector for the stage of S,
``Z_S = base_S + d h (J(z) Z_S + f_p)``, a linear equation iterated with the same factorised
``I - d h J`` (:func:`stage_sens`); the error estimate of S goes through the same filter
column by column when S is error-controlled.

References
----------
.. [1] M. E. Hosea, L. F. Shampine, "Analysis and implementation of TR-BDF2", Appl.
   Numer. Math. 20 (1996) 21-37.
.. [2] R. E. Bank, W. M. Coughran, W. Fichtner, E. H. Grosse, D. J. Rose, R. K. Smith,
   "Transient simulation of silicon devices and circuits", IEEE Trans. CAD 4 (1985) 436-451.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sensitivity.ode import linsolve
from sensitivity.ode.bdf import sens_corrector, set_scale, wrms
from sensitivity.ode.control import (
    EPS,
    LOG_ERR_FLOOR,
    MAX_STEPS,
    MIN_FACTOR,
    NEWTON_FAILED,
    NONFINITE,
    SAFETY,
    STEP_TOO_SMALL,
    SUCCESS,
    TERMINATED,
    borrow,
    copy1,
    error_norm,
    initial_step,
    jac_at,
    jit,
    pi_factor,
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

GAMMA = 2.0 - math.sqrt(2.0)
D = GAMMA / 2.0
W = math.sqrt(2.0) / 4.0
# error weights b_hat - b on (f0, f_gamma, f1)
E0, E1, E2 = (1.0 - W) / 3.0 - W, (3.0 * W + 1.0) / 3.0 - W, D / 3.0 - D
NEWTON_MAXITER = 5
KEEP_STEP = 1.2  # keep h (and the LU) when the controller asks for a factor in [1, 1.2]


@jit(inline=True)
def stage_base(y, h, a0, f0, a1, f1, base):
    """Set ``base = y + h (a0 f0 + a1 f1)``."""
    for i in range(y.shape[0]):
        base[i] = y[i] + h * (a0 * f0[i] + a1 * f1[i])


@jit(inline=True)
def stage_residual(base, dh, f, z, out):
    """Set ``out = base + dh f - z``; return the index of a non-finite f (-1 if none)."""
    bad = -1
    for i in range(z.shape[0]):
        if bad < 0 and not np.isfinite(f[i]):
            bad = i
        out[i] = base[i] + dh * f[i] - z[i]
    return bad


@jit(inline=True)
def stage_derivative(z, base, dh, f):
    """Set ``f = (z - base) / dh``, the stage derivative implied by the converged stage."""
    for i in range(z.shape[0]):
        f[i] = (z[i] - base[i]) / dh


@jit(twin=True)
def stage_newton(rhs, t, base, dh, M, piv, scale, p, tol, z, f, dz):
    """Solve ``z = base + dh f(t, z)`` from the predictor in ``z``; (ok, n_iter, bad)."""
    norm_old = -1.0
    for k in range(NEWTON_MAXITER):
        rhs(t, z, p, f)
        bad = stage_residual(base, dh, f, z, dz)
        if bad >= 0:
            return False, k + 1, bad
        solve_lu(M, piv, dz, dz)
        norm = wrms(1.0, dz, scale)
        rate = norm / norm_old if norm_old > 0.0 else -1.0
        if rate >= 0.0 and (
            rate >= 1.0 or rate ** (NEWTON_MAXITER - k) / (1.0 - rate) * norm > tol
        ):
            return False, k + 1, -1
        for i in range(z.shape[0]):
            z[i] += dz[i]
        if norm == 0.0 or (rate >= 0.0 and rate / (1.0 - rate) * norm < tol):
            return True, k + 1, -1
        norm_old = norm
    return False, NEWTON_MAXITER, -1


@jit(inline=True)
def hermite(y, y_new, f0, f1, h, Q):
    """Cubic Hermite dense output: y(t + s h) = y + sum_j Q[:, j] s**(j+1)."""
    for i in range(y.shape[0]):
        dlt = y_new[i] - y[i]
        Q[i, 0] = h * f0[i]
        Q[i, 1] = 3.0 * dlt - h * (2.0 * f0[i] + f1[i])
        Q[i, 2] = h * (f0[i] + f1[i]) - 2.0 * dlt


@jit(twin=True)
def trbdf2_step(rhs, sens, t, y, f0, h, M, piv, scale, p, P, tol, work, n):
    """Both implicit stages of one step; returns (ok, nfev, bad) and fills ``work``.

    ``work`` rows: 0 z_gamma, 1 f_gamma, 2 y_new, 3 f_new, 4 base, 5 scratch, 6 psi, 7 d.
    With sensitivities (``n < len(y)``, state ``[y (n), S (n, K)]``) each stage runs
    Newton on its first n components, then the staggered corrector of the sensitivity
    stage with the same factorisation (:func:`stage_sens`).
    """
    dh = D * h
    z2, f2, z3, f3, base, dz = work[0], work[1], work[2], work[3], work[4], work[5]
    stage_base(y, h, D, f0, 0.0, f0, base)
    for i in range(y.shape[0]):
        z2[i] = y[i] + GAMMA * h * f0[i]  # explicit Euler predictor
    ok, n1, bad = stage_newton(
        rhs, t + GAMMA * h, base[:n], dh, M, piv, scale[:n], p, tol, z2[:n], f2[:n], dz[:n]
    )
    if ok and n < y.shape[0]:
        ok, ns = stage_sens(sens, t + GAMMA * h, z2, base, dh, M, piv, scale, P, tol, work, f2, n)
        n1 += ns
    if not ok:
        return False, n1, bad
    stage_derivative(z2, base, dh, f2)
    stage_base(y, h, W, f0, W, f2, base)
    for i in range(y.shape[0]):
        z3[i] = y[i] + (z2[i] - y[i]) / GAMMA  # linear extrapolation predictor
    ok, n2, bad = stage_newton(
        rhs, t + h, base[:n], dh, M, piv, scale[:n], p, tol, z3[:n], f3[:n], dz[:n]
    )
    if ok and n < y.shape[0]:
        ok, ns = stage_sens(sens, t + h, z3, base, dh, M, piv, scale, P, tol, work, f3, n)
        n2 += ns
    if ok:
        stage_derivative(z3, base, dh, f3)
    return ok, n1 + n2, bad


@jit(twin=True)
def stage_sens(sens, t, z, base, dh, M, piv, scale, P, tol, work, f, n):
    """Staggered corrector of a sensitivity stage ``Z_S = base_S + dh (J Z_S + f_p)``.

    With the y part of ``z`` converged, this is the BDF corrector of
    :func:`sensitivity.ode.bdf.sens_corrector` with ``c = dh`` and ``psi = z_pred - base``
    (a linear iteration with the factorised ``I - dh J``, never a Newton iteration);
    ``z[n:]`` holds the predictor on entry and the stage on exit. Returns (ok, evals).
    """
    psi, d, dz = work[6], work[7], work[5]
    for i in range(n, z.shape[0]):
        psi[i] = z[i] - base[i]
    ok, evals, _ = sens_corrector(sens, t, z, z, dh, psi, M, piv, scale, P, d, f, dz, n, tol)
    return ok, evals


@jit(twin=True)
def esdirk_solve(fns, g, t_span, y0, p, tol, opts, t_eval, ev_dir, ev_term, P):
    """Integrate ``y' = rhs(t, y, p)`` with TR-BDF2; arguments as ``bdf_solve``.

    ``opts = [first_step (0 = auto), max_step, max_steps, save_steps, record, n_y, n_err,
    kl, ku]`` (the band as in ``bdf_solve``).
    Forward sensitivities as in ``bdf_solve``: with ``0 < n_y < len(y0)`` the state is
    ``[y (n_y), S (n_y, K)]`` with right-hand side ``sens(t, Y, P, dY)``; the error norm
    covers the first ``n_err`` components. Without sensitivities pass ``sens = rhs``,
    ``P = p``; ``fns = (rhs, jac, sens)``.
    """
    rhs, jac, sens = rhs_at(fns, 0), jac_at(fns, 1), rhs_at(fns, 2)
    N = y0.shape[0]
    n = int(opts[5]) if opts[5] > 0.0 else N
    n_err = int(opts[6]) if opts[6] > 0.0 else N
    rtol, atol = tol[0], tol[1:]
    t0, t_end = t_span[0], t_span[1]
    direction = 1.0 if t_end >= t0 else -1.0
    max_step, max_steps, save_steps, record = opts[1], int(opts[2]), opts[3] > 0.0, opts[4] > 0
    newton_tol = max(10.0 * EPS / rtol, min(0.03, rtol**0.5))
    counts = np.zeros(5, np.int64)  # nfev, njev, nlu, nsteps, nreject
    info = np.zeros(2)
    y, f0, err, scale = y0.copy(), np.empty(N), np.empty(N), np.empty(N)
    r = np.empty(n)
    work = np.empty((8, N))
    nev = ev_dir.shape[0]
    g_old, g_work = np.empty(nev), np.empty(nev)
    Q = np.zeros((N, 3))
    owners, ks_own = new_trace(t0, y0, t_eval, save_steps, nev, 3)
    bufs, ks = borrow_bufs(owners), borrow(ks_own)  # owners: only where they change
    sens(t0, y, P, f0)
    if g is not None:  # a compile-time branch: None prunes the event code
        rhs_at(g, 0)(t0, y, p, g_old)
    counts[0] = 1
    h_abs = opts[0]
    if h_abs <= 0.0:  # from the controlled components only: "partial" keeps y's steps
        h_abs = initial_step(
            sens if n_err == N else rhs,
            t0,
            y[:n_err],
            f0[:n_err],
            P if n_err == N else p,
            direction,
            2,
            rtol,
            atol[:n_err],
            max_step,
            err[:n_err],
            scale[:n_err],
        )
        counts[0] += 1
    J, M, piv = workspace(n, opts)  # dense or banded (opts[-2:], see linsolve)
    J = new_jacobian(jac, t0, y[:n], p, J)
    counts[1] = 1
    t, h_lu, current_jac, log_prev, rejected = t0, 0.0, True, LOG_ERR_FLOOR, False
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
            t_new = t + direction * min(h_abs, max_step)
            if direction * (t_new - t_end) > 0.0:
                t_new = t_end
            h = t_new - t
            if h != h_lu:
                M = factor(J, D * h, M, piv)
                counts[2] += 1
                h_lu = h
            set_scale(atol, rtol, y, scale)
            ok, nf, bad = trbdf2_step(
                rhs, sens, t, y, f0, h, M, piv, scale, p, P, newton_tol, work, n
            )
            counts[0] += nf
            if not ok:
                if bad < 0 and not current_jac:  # stale J: renew it and retry the same step
                    J = new_jacobian(jac, t, y[:n], p, J)
                    counts[1] += 1
                    current_jac, h_lu = True, 0.0
                    continue
                why = 2 if bad >= 0 else 1
                if bad >= 0:
                    info[0], info[1] = t_new, bad
                h_abs = abs(h) * 0.5
                counts[4] += 1
                rejected = True
                continue
            y_new, f_new = work[2], work[3]
            for i in range(N):
                err[i] = h * (E0 * f0[i] + E1 * work[1, i] + E2 * f_new[i])
            solve_lu(M, piv, err[:n], err[:n])  # Hosea-Shampine filter: (I - d h J)^{-1} est
            filter_columns(M, piv, err, n, n_err, r)
            en = error_norm(err[:n_err], y[:n_err], y_new[:n_err], rtol, atol[:n_err])
            if not (en <= 1.0):
                h_abs = abs(h) * max(MIN_FACTOR, SAFETY * en ** (-1.0 / 3.0))
                counts[4] += 1
                rejected, why = True, 0
                continue
            why, current_jac = 0, False
            if wants_dense(record, nev, t_eval, ks, direction, t_new):
                hermite(y, y_new, f0, f_new, h, Q)
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
                    t,
                    h,
                    y,
                    Q,
                    y_new,
                    t_eval,
                    save_steps,
                    record,
                    bufs,
                    ks,
                    work[5],
                    g_work,
                )
            else:  # no events (pruned at compile time): outputs inline, no buffer-tuple call
                step_outputs(bufs, ks, save_steps, record, t_eval, t_new, t, h, y, Q, y_new)
            counts[3] += 1
            if terminal:
                t = t_stop
                status = TERMINATED
                break
            t = t_new
            copy1(y, y_new)
            copy1(f0, f_new)
            fac, log_prev = pi_factor(en, log_prev, 3.0, rejected)
            rejected = False
            if not (1.0 <= fac <= KEEP_STEP):
                h_abs = abs(h) * fac
        if status != SUCCESS or not direction * (t - t_end) < 0.0:
            break
        owners = make_room(owners, ks, save_steps, record, nev)
        bufs = borrow_bufs(owners)
    return finish_trace(status, info, counts, owners, ks_own)


@jit(twin=True)
def filter_columns(M, piv, err, n, n_err, r):
    """Apply the error filter ``(I - d h J)^{-1}`` to the controlled sensitivity columns.

    ``err[n:]`` is S's estimate, row-major (n, K); the sensitivity system's iteration
    matrix is block lower triangular with ``I - d h J`` on its diagonal, and, as CVODES
    does, the filter uses the diagonal blocks only. Columns outside ``n_err`` are skipped.
    """
    N = err.shape[0]
    if n_err > n:
        solve_lu_block(M, piv, err[n:], (N - n) // n, r)


@dataclass(frozen=True)
class ESDIRK(linsolve.StiffMethod):
    """Method entry of :data:`sensitivity.ode.solve.METHODS` for TR-BDF2."""

    anchor_at_end = False
    takes_sens = True

    def kernel(self):
        return esdirk_solve

    def extra_opts(self, n_y, n_err):
        return [float(n_y), float(n_err)]
