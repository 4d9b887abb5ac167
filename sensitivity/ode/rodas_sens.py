"""Forward sensitivities through Rodas4: the Rosenbrock method on the augmented system.

For K sensitivity columns the state is ``Z = [y (n), S (n, K) row-major]`` with
``Z' = F(t, Z) = [f, G]``, ``G = f_y S + f_p E`` (``sens(t, Z, P, dZ)``, one dual
evaluation of f). Rodas4 (:mod:`.rosenbrock`) applied to Z needs the augmented Jacobian,
which is block lower-triangular::

    J_aug = [[J, 0], [B, J]],     B u = d/dδ G(y + δ u, S) = f_yy[u, S] + f_py[u, E]

so each stage ``(I - γ h J_aug) U_i = γ h (F(Z_i) + sum_j C_ij U_j / h + h d_i F_t)``
splits into the y-stage with the plain method's LU of ``I - γ h J`` and K columns

    (I - γ h J) V_i = γ h (G(Z_i) + sum_j C_ij V_j / h + h d_i G_t) + γ h B u_i

with the *same* LU; ``B u_i`` is one evaluation of f on second-order duals
(``jvp(t, Z, P, [u_i, 0, 0, 0], out)``, :func:`sensitivity.sens.dual2_kernels.aug_jvp_kernel`)
at the step's start, where J is taken (for n <= 5 the block B is built instead, with n
such evaluations per Jacobian, and applied to each u_i). ``F_t`` is the plain method's
one-sided difference applied to F, so its S part is the exact derivative of the y part's
difference. With the
steps held fixed the result is therefore the exact derivative of the Rodas4 solution map
(internal differentiation).

``opts = [first_step, max_step, max_steps, save_steps, record, n_y, n_err, -1, -1]`` as
for :func:`sensitivity.ode.esdirk.esdirk_solve`: the error norm covers the first ``n_err``
components (``n_y``: steps of the plain solve; ``N``: the sensitivities too). Dense LU only
(the last two entries: the dense band of :func:`sensitivity.ode.linsolve.workspace`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from sensitivity.ode.control import (
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
    f8,
    f8_1d,
    initial_step,
    jac_at,
    jit,
    pi_factor,
    rhs_at,
    step_too_small,
    user_functions,
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
from sensitivity.ode.linsolve import (
    factor,
    new_jacobian,
    python_twin,
    solve_lu,
    solve_lu_block,
    with_band,
    workspace,
)
from sensitivity.ode.rosenbrock import (
    EPS,
    GAMMA,
    C,
    difference,
    rodas_dense,
    stage_rhs,
    stage_state,
)

JVP_SIG = numba.types.void(f8, f8_1d, f8_1d, f8_1d, f8_1d)  # jvp(t, Z, P, V, dZ)
jvp_at = user_functions(numba.types.FunctionType(JVP_SIG))


@jit(twin=True)
def aug_jacobian_and_ft(sens, jac, t, Z, F0, p, P, J, Ft, work, n):
    """J at (t, y) and the one-sided difference ``F_t`` of the augmented F; returns (J, nfev)."""
    J = new_jacobian(jac, t, Z[:n], p, J)
    delt = math.sqrt(EPS * max(1e-5, abs(t)))
    nfev = 0
    for side in (1.0, -1.0):  # as rosenbrock.jacobian_and_ft, on F = [f, G]
        sens(t + side * delt, Z, P, work)
        nfev += 1
        if difference(work, F0, side * delt, Ft):
            return J, nfev
    Ft[:] = 0.0
    return J, nfev


B_COLUMNS_MAX = 5  # n up to which B is built once per Jacobian (n sweeps < 6 stage sweeps)


@jit(twin=True)
def lower_block(jvp, t, Z, P, V, JV, B, n):
    """Fill ``B`` (n K, n): the lower-left block of J_aug, one second-order sweep per column."""
    N = Z.shape[0]
    V[:] = 0.0
    for j in range(n):
        V[j] = 1.0
        jvp(t, Z, P, V, JV)
        V[j] = 0.0
        for q in range(N - n):
            B[q, j] = JV[N + n + q]


@jit(twin=True)
def sens_stages(sens, jvp, t, Z, F0, Ft, h, M, piv, P, U, work, V, JV, B, n):
    """The six augmented stages into ``U`` (6, N); returns (last stage, bad index).

    ``work`` rows: 0 stage state, 1 F, 2 the K columns, 3 B u_i. ``B`` (n K, n) is the
    lower-left block of J_aug when built (small n), else empty and ``B u_i`` comes from
    ``jvp`` with direction ``V`` (N + len(P),) = ``[u_i, 0, 0, 0]`` into ``JV`` (2 N,).
    """
    N = Z.shape[0]
    K = N // n - 1
    z, F, col, Bu = work[0], work[1], work[2], work[3]
    gh = GAMMA * h
    V[:] = 0.0
    for i in range(6):
        if i == 0:
            copy1(F, F0)
        else:
            stage_state(Z, U, i, z)
            sens(t + C[i] * h, z, P, F)
        Ui = U[i]
        bad = stage_rhs(F, U, i, h, Ft, Ui)
        if bad >= 0:
            return i, bad
        solve_lu(M, piv, Ui[:n], Ui[:n])  # y stage: (I - gamma h J) u_i = gamma h rhs_i
        if B.shape[0] > 0:
            for q in range(N - n):
                acc = 0.0
                for j in range(n):
                    acc += B[q, j] * Ui[j]
                Bu[q] = acc
        else:
            for q in range(n):  # a loop: a slice copy's shape check compiles string formatting
                V[q] = Ui[q]
            jvp(t, Z, P, V, JV)  # second half: [J u_i, B u_i]
            for q in range(N - n):
                Bu[q] = JV[N + n + q]
        for q in range(N - n):
            Ui[n + q] += gh * Bu[q]
        solve_lu_block(M, piv, Ui[n:], K, col)  # the K sensitivity columns, with the same LU
    return 5, -1


@jit(twin=True)
def rodas_sens_solve(fns, g, t_span, y0, p, tol, opts, t_eval, ev_dir, ev_term, P):
    """Integrate the augmented system ``[y, S]`` with Rodas4 (module docstring);
    ``fns = (rhs, jac, sens, jvp)``."""
    rhs, jac, sens, jvp = rhs_at(fns, 0), jac_at(fns, 1), rhs_at(fns, 2), jvp_at(fns, 3)
    N = y0.shape[0]
    n = int(opts[5])
    n_err = int(opts[6]) if opts[6] > 0.0 else N
    rtol, atol = tol[0], tol[1:]
    t0, t_end = t_span[0], t_span[1]
    direction = 1.0 if t_end >= t0 else -1.0
    max_step, max_steps, save_steps, record = opts[1], int(opts[2]), opts[3] > 0.0, opts[4] > 0
    counts = np.zeros(5, np.int64)  # nfev, njev, nlu, nsteps, nreject
    info = np.zeros(2)
    Z, Z_new, F0, Ft = y0.copy(), np.empty(N), np.empty(N), np.empty(N)
    U, work = np.empty((6, N)), np.empty((4, N))
    V, JV = np.zeros(N + P.shape[0]), np.empty(2 * N)  # the jvp's direction and output
    B = np.empty((N - n, n)) if n <= B_COLUMNS_MAX else np.empty((0, n))
    nev = ev_dir.shape[0]
    g_old, g_work = np.empty(nev), np.empty(nev)
    Q = np.zeros((N, 3))
    owners, ks_own = new_trace(t0, y0, t_eval, save_steps, nev, 3)
    bufs, ks = borrow_bufs(owners), borrow(ks_own)  # owners: only where they change
    sens(t0, Z, P, F0)
    if g is not None:  # a compile-time branch: None prunes the event code
        rhs_at(g, 0)(t0, Z, p, g_old)
    counts[0] = 1
    h_abs = opts[0]
    if h_abs <= 0.0:  # from y alone, as the plain solve
        h_abs = initial_step(
            rhs, t0, Z[:n], F0[:n], p, direction, 3, rtol, atol[:n], max_step, work[0, :n],
            work[1, :n],
        )  # fmt: skip
        counts[0] += 1
    J, M, piv = workspace(n, opts)  # dense: run() appends the dense band [-1, -1]
    t, t_jac, log_prev, rejected, status = t0, np.nan, LOG_ERR_FLOOR, False, SUCCESS
    nonfinite = False
    while True:  # again only after make_room: owners is not carried by the step loop
        # (a tuple reassigned in a loop counts its nine references at every back edge)
        while direction * (t - t_end) < 0.0 and has_room(bufs, ks, save_steps, record, nev):
            if counts[3] >= max_steps or step_too_small(h_abs, t):
                status = MAX_STEPS if counts[3] >= max_steps else STEP_TOO_SMALL
                if status == STEP_TOO_SMALL and nonfinite:
                    status = NONFINITE
                else:
                    info[0] = t
                break
            t_new = t + direction * min(h_abs, max_step)
            if direction * (t_new - t_end) > 0.0:
                t_new = t_end
            h = t_new - t
            if t_jac != t:
                J, nf = aug_jacobian_and_ft(sens, jac, t, Z, F0, p, P, J, Ft, work[0], n)
                counts[0] += nf
                if B.shape[0] > 0:
                    lower_block(jvp, t, Z, P, V, JV, B, n)
                    counts[0] += n
                counts[1] += 1
                t_jac = t
            M = factor(J, GAMMA * h, M, piv)
            counts[2] += 1
            last, bad = sens_stages(sens, jvp, t, Z, F0, Ft, h, M, piv, P, U, work, V, JV, B, n)
            counts[0] += last
            if bad >= 0:
                info[0], info[1], nonfinite = t + C[last] * h, bad, True
                h_abs = abs(h) * 0.5
                counts[4] += 1
                rejected = True
                continue
            nonfinite = False
            stage_state(Z, U, 5, Z_new)
            for m in range(N):
                Z_new[m] += U[5, m]
            en = error_norm(U[5, :n_err], Z[:n_err], Z_new[:n_err], rtol, atol[:n_err])
            if not (en <= 1.0):
                h_abs = abs(h) * max(MIN_FACTOR, SAFETY * en ** (-0.25))
                counts[4] += 1
                rejected = True
                continue
            if wants_dense(record, nev, t_eval, ks, direction, t_new):
                rodas_dense(Z, Z_new, U, Q)
            terminal, t_stop = False, t_new
            if g is not None:
                t_stop, terminal = accept_step(
                    g, p, ev_dir, ev_term, g_old, t, t_new, t, h, Z, Q, Z_new, t_eval, save_steps,
                    record, bufs, ks, work[0], g_work,
                )  # fmt: skip
            else:  # no events (pruned at compile time): outputs inline, no buffer-tuple call
                step_outputs(bufs, ks, save_steps, record, t_eval, t_new, t, h, Z, Q, Z_new)
            counts[3] += 1
            if terminal:
                t = t_stop
                status = TERMINATED
                break
            t = t_new
            copy1(Z, Z_new)
            sens(t, Z, P, F0)
            counts[0] += 1
            fac, log_prev = pi_factor(en, log_prev, 4.0, rejected)
            h_abs, rejected = abs(h) * fac, False
        if status != SUCCESS or not direction * (t - t_end) < 0.0:
            break
        owners = make_room(owners, ks, save_steps, record, nev)
        bufs = borrow_bufs(owners)
    return finish_trace(status, info, counts, owners, ks_own)


def run(fns, compiled, t_span, y0, p, tol, opts, t_eval, ev, sens, jvp, P, n_y, n_err):
    """Run :func:`rodas_sens_solve` compiled (``fns`` as :func:`sensitivity.ode.solve.
    _functions` returns them, ``sens`` and ``jvp`` as addresses) or as its Python twin
    (callables); returns the trace."""
    opts = with_band(np.concatenate([opts, [float(n_y), float(n_err)]]))
    funcs, g = fns
    if not compiled:
        twin = python_twin(rodas_sens_solve)
        return twin((funcs[0], funcs[1], sens, jvp), g, t_span, y0, p, tol, opts, t_eval, *ev, P)
    addr = np.concatenate([funcs, np.asarray(sens, np.int64), np.asarray(jvp, np.int64)])
    return rodas_sens_solve(addr, g, t_span, y0, p, tol, opts, t_eval, *ev, P)
