"""Rodas4: the L-stable, stiffly accurate Rosenbrock method of order 4(3) of Hairer & Wanner.

A Rosenbrock method replaces Newton's iteration by one linear solve per stage with the
matrix ``I/(gamma h) - J`` (J at the step's start, exact: from the compiled duals). In
Hairer & Wanner's transformed variables (RODAS, [1] IV.7, eq. 7.25), stage i solves::

    (I/(gamma h) - J) u_i = f(t + c_i h, y + sum_{j<i} a_ij u_j)
                            + sum_{j<i} (C_ij / h) u_j + h d_i f_t

y_new = y + sum a_6j u_j + u_6 (stiffly accurate: the last stages are at c = 1) and the
error estimate is u_6, the difference to the embedded order-3 solution. ``f_t`` (for
non-autonomous f) is a forward difference taken with each Jacobian. The dense output is the
order-3 continuous extension of RODAS::

    y(t + s h) = (1 - s) y + s (y_new + (1 - s) (k_2 + s k_3)),  k_r = sum_j D_rj u_j

A new J and one LU per step attempt: the method needs the exact Jacobian at each step (it is
not a W-method). The step-size control is the PI controller of :mod:`.control` with
exponent 1/4.

References
----------
.. [1] E. Hairer, G. Wanner, "Solving Ordinary Differential Equations II", 2nd ed.,
   Springer (1996), IV.7; coefficients of their code RODAS (METH = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sensitivity.ode import linsolve
from sensitivity.ode.control import (
    EPS,
    LOG_ERR_FLOOR,
    MAX_STEPS,
    MIN_FACTOR,
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
from sensitivity.ode.linsolve import factor, new_jacobian, solve_lu, workspace

GAMMA = 0.25
C = np.array([0.0, 0.386, 0.21, 0.63, 1.0, 1.0])  # stage times
DT = np.array([0.25, -0.1043, 0.1035, -0.03620000000000023, 0.0, 0.0])  # d_i (f_t terms)
A = np.zeros((6, 6))  # a_ij on the u_j (row 5 = row 4 + u_5: stiffly accurate)
A[1, 0] = 1.544
A[2, :2] = [0.9466785280815826, 0.2557011698983284]
A[3, :3] = [3.314825187068521, 2.896124015972201, 0.9986419139977817]
A[4, :4] = [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950]
A[5, :5] = [*A[4, :4], 1.0]
CC = np.zeros((6, 6))  # C_ij
CC[1, 0] = -5.6688
CC[2, :2] = [-2.430093356833875, -0.2063599157091915]
CC[3, :3] = [-0.1073529058151375, -9.594562251023355, -20.47028614809616]
CC[4, :4] = [7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160]
CC[5, :5] = [
    8.083246795921522,
    -7.981132988064893,
    -31.52159432874371,
    16.31930543123136,
    -6.058818238834054,
]
DENSE = np.array(
    [  # D_rj of the continuous extension (rows k_2, k_3)
        [
            10.12623508344586,
            -7.487995877610167,
            -34.80091861555747,
            -7.992771707568823,
            1.025137723295662,
        ],
        [
            -0.6762803392801253,
            6.087714651680015,
            16.43084320892478,
            24.76722511418386,
            -6.594389125716872,
        ],
    ]
)


@jit(inline=True)
def stage_state(y, U, i, out):
    """Set ``out = y + sum_{j<i} A[i, j] U[j]``."""
    for m in range(y.shape[0]):
        acc = y[m]
        for j in range(i):
            acc += A[i, j] * U[j, m]
        out[m] = acc


@jit(inline=True)
def stage_rhs(f, U, i, h, ft, out):
    """Set ``out = gamma h (f + sum_{j<i} C[i, j] U[j] / h + h d_i f_t)``; return bad index."""
    bad = -1
    gh = GAMMA * h
    for m in range(f.shape[0]):
        if bad < 0 and not np.isfinite(f[m]):
            bad = m
        acc = f[m] + h * DT[i] * ft[m]
        for j in range(i):
            acc += CC[i, j] * U[j, m] / h
        out[m] = gh * acc
    return bad


@jit(twin=True)
def rodas_stages(rhs, t, y, f0, ft, h, M, piv, p, U, work):
    """The six stages of one step into ``U``; returns (nfev, bad). ``work`` rows: 0 state, 1 f."""
    z, f = work[0], work[1]
    for i in range(6):
        if i == 0:
            copy1(f, f0)
        else:
            stage_state(y, U, i, z)
            rhs(t + C[i] * h, z, p, f)
        bad = stage_rhs(f, U, i, h, ft, U[i])
        if bad >= 0:
            return i, bad
        solve_lu(M, piv, U[i], U[i])  # (I - gamma h J) U_i = gamma h rhs_i
    return 5, -1


@jit(inline=True)
def difference(f1, f0, dt, ft):
    """Set ``ft = (f1 - f0) / dt``; return True if every entry is finite."""
    ok = True
    for m in range(f0.shape[0]):
        ft[m] = (f1[m] - f0[m]) / dt
        ok = ok and np.isfinite(ft[m])
    return ok


@jit(twin=True)
def jacobian_and_ft(rhs, jac, t, y, f0, p, J, ft, work):
    """Evaluate J and a one-sided difference ``f_t`` into ``ft``; return (J, evaluations)."""
    J = new_jacobian(jac, t, y, p, J)
    delt = math.sqrt(EPS * max(1e-5, abs(t)))
    nfev = 0
    for side in (1.0, -1.0):  # forward difference; backward if f is not finite ahead
        rhs(t + side * delt, y, p, work)
        nfev += 1
        if difference(work, f0, side * delt, ft):
            return J, nfev
    ft[:] = 0.0  # f is not finite on either side of t: the stages will report it
    return J, nfev


@jit(inline=True)
def rodas_dense(y, y_new, U, Q):
    """Set Q so that y(t + s h) = y + sum_j Q[:, j] s**(j+1) (continuous extension)."""
    for m in range(y.shape[0]):
        k2 = 0.0
        k3 = 0.0
        for j in range(5):
            k2 += DENSE[0, j] * U[j, m]
            k3 += DENSE[1, j] * U[j, m]
        Q[m, 0] = y_new[m] - y[m] + k2
        Q[m, 1] = k3 - k2
        Q[m, 2] = -k3


@jit(twin=True)
def rodas_solve(fns, g, t_span, y0, p, tol, opts, t_eval, ev_dir, ev_term):
    """Integrate ``y' = rhs(t, y, p)`` with Rodas4; arguments as ``bdf_solve``.

    ``opts = [first_step (0 = auto), max_step, max_steps, save_steps, record, kl, ku]``
    (the band as in ``bdf_solve``); ``fns = (rhs, jac)``.
    """
    rhs, jac = rhs_at(fns, 0), jac_at(fns, 1)
    n = y0.shape[0]
    rtol, atol = tol[0], tol[1:]
    t0, t_end = t_span[0], t_span[1]
    direction = 1.0 if t_end >= t0 else -1.0
    max_step, max_steps, save_steps, record = opts[1], int(opts[2]), opts[3] > 0.0, opts[4] > 0
    counts = np.zeros(5, np.int64)  # nfev, njev, nlu, nsteps, nreject
    info = np.zeros(2)
    y, y_new, f0, ft = y0.copy(), np.empty(n), np.empty(n), np.empty(n)
    U, work = np.empty((6, n)), np.empty((2, n))
    nev = ev_dir.shape[0]
    g_old, g_work = np.empty(nev), np.empty(nev)
    Q = np.zeros((n, 3))
    owners, ks_own = new_trace(t0, y0, t_eval, save_steps, nev, 3)
    bufs, ks = borrow_bufs(owners), borrow(ks_own)  # owners: only where they change
    rhs(t0, y, p, f0)
    if g is not None:  # a compile-time branch: None prunes the event code
        rhs_at(g, 0)(t0, y, p, g_old)
    counts[0] = 1
    h_abs = opts[0]
    if h_abs <= 0.0:
        h_abs = initial_step(
            rhs, t0, y, f0, p, direction, 3, rtol, atol, max_step, work[0], work[1]
        )
        counts[0] += 1
    J, M, piv = workspace(n, opts)  # dense or banded (opts[-2:], see linsolve)
    t, t_jac, log_prev, rejected, status = t0, np.nan, LOG_ERR_FLOOR, False, SUCCESS
    nonfinite = False
    while True:  # again only after make_room: owners is not carried by the step loop
        # (a tuple reassigned in a loop counts its nine references at every back edge)
        while direction * (t - t_end) < 0.0 and has_room(bufs, ks, save_steps, record, nev):
            if counts[3] >= max_steps or step_too_small(h_abs, t):
                status = MAX_STEPS if counts[3] >= max_steps else STEP_TOO_SMALL
                if status == STEP_TOO_SMALL and nonfinite:
                    status = NONFINITE  # info holds the t and component of the bad value
                else:
                    info[0] = t
                break
            t_new = t + direction * min(h_abs, max_step)
            if direction * (t_new - t_end) > 0.0:
                t_new = t_end
            h = t_new - t
            if t_jac != t:  # the exact Jacobian at the step's start (not a W-method)
                J, nf = jacobian_and_ft(rhs, jac, t, y, f0, p, J, ft, work[0])
                counts[0] += nf
                counts[1] += 1
                t_jac = t
            M = factor(J, GAMMA * h, M, piv)
            counts[2] += 1
            last, bad = rodas_stages(rhs, t, y, f0, ft, h, M, piv, p, U, work)
            counts[0] += last
            if bad >= 0:  # non-finite f: halve; reported if the step then underflows
                info[0], info[1], nonfinite = t + C[last] * h, bad, True
                h_abs = abs(h) * 0.5
                counts[4] += 1
                rejected = True
                continue
            nonfinite = False
            stage_state(y, U, 5, y_new)
            for m in range(n):
                y_new[m] += U[5, m]
            en = error_norm(U[5], y, y_new, rtol, atol)
            if not (en <= 1.0):
                h_abs = abs(h) * max(MIN_FACTOR, SAFETY * en ** (-0.25))
                counts[4] += 1
                rejected = True
                continue
            if wants_dense(record, nev, t_eval, ks, direction, t_new):
                rodas_dense(y, y_new, U, Q)
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
                    work[0],
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
            rhs(t, y, p, f0)
            counts[0] += 1
            fac, log_prev = pi_factor(en, log_prev, 4.0, rejected)
            h_abs, rejected = abs(h) * fac, False
        if status != SUCCESS or not direction * (t - t_end) < 0.0:
            break
        owners = make_room(owners, ks, save_steps, record, nev)
        bufs = borrow_bufs(owners)
    return finish_trace(status, info, counts, owners, ks_own)


@dataclass(frozen=True)
class Rodas4(linsolve.StiffMethod):
    """Method entry of :data:`sensitivity.ode.solve.METHODS` for :func:`rodas_solve`
    (its forward sensitivities run through :mod:`sensitivity.ode.rodas_sens`)."""

    anchor_at_end = False

    def kernel(self):
        return rodas_solve
