"""Objective(prob, term): an ODE experiment as an objective for scipy.optimize.

theta are the problem's parameters p (all of them, or those listed in
``params``; with ``fit_y0`` the initial values follow). One forward solve with
its sensitivities serves the value, the residuals, their Jacobian and the
gradient at a given theta (the evaluation cache of
:class:`~sensitivity.inverse.objective.AbstractObjective`):

* residuals and the residual Jacobian from forward sensitivities
  (:class:`~sensitivity.sens.forward.SensitivitySolver`, full error control);
* the gradient alone (``minimize``) from the cheaper of forward sensitivities
  and the discrete adjoint (:func:`sensitivity.sens.adjoint.gradient`).
"""

from __future__ import annotations

import numpy as np

from sensitivity.ad.nb import CHUNK
from sensitivity.inverse.objective import AbstractObjective, Evaluation
from sensitivity.ode.bdf import BDF
from sensitivity.sens.adjoint import adjoint_gradient, observation_times
from sensitivity.sens.forward import SensitivitySolver
from sensitivity.sens.objectives import Term, TermSum


class Objective(AbstractObjective):
    """An ODE experiment: a problem, an objective term and which parameters are fitted.

    Parameters
    ----------
    prob : ODEProblem
    term : L2Misfit, PointObjective or a sum of them
        The misfit; least-squares methods need residual terms (L2Misfit).
    params : sequence of int, optional
        Indices of the parameters p that theta holds (default: all).
    fit_y0 : bool or sequence of int
        Also fit the initial values (all, or those listed); they follow the
        parameters in theta.
    method : str
        Integration method (``"auto"``: as :func:`sensitivity.solve`).
    rtol, atol : float
        Tolerances of the solves.
    gradient : {"auto", "forward", "adjoint"}
        How ``jac`` is computed when residuals are not asked for.
    name : str
    """

    def __init__(
        self,
        prob,
        term,
        params=None,
        fit_y0=False,
        method="auto",
        rtol=1e-6,
        atol=1e-8,
        gradient="auto",
        name="experiment",
    ):
        if not isinstance(term, Term):
            raise TypeError(
                f"term must be an objective term (L2Misfit, ...), got {type(term).__name__}"
            )
        self.prob, self.term = prob, term
        term.bind(prob)
        terms = term.terms if isinstance(term, TermSum) else [term]
        # integral terms: value and gradient by the continuous adjoint (no residuals)
        self.has_integral = any(t.is_integral for t in terms)
        self.terms = terms
        self.params = np.arange(prob.m) if params is None else np.asarray(params, dtype=int)
        if self.params.ndim != 1 or np.any(self.params < 0) or np.any(self.params >= prob.m):
            raise ValueError(f"params must be indices into p (0 ... {prob.m - 1}), got {params}")
        if fit_y0 is True:
            self.y0_idx = np.arange(prob.n)
        elif fit_y0 is False or fit_y0 is None:
            self.y0_idx = np.zeros(0, dtype=int)
        else:
            self.y0_idx = np.asarray(fit_y0, dtype=int)
        self.n_params = self.params.size + self.y0_idx.size
        self.has_residuals = all(t.has_residuals for t in terms)
        self.n_data = sum(t.n_residuals for t in terms if t.has_residuals)
        self.name, self.gradient_method = name, gradient
        self.method, self.rtol, self.atol = method, rtol, atol
        self.t_obs, self.owners = observation_times(terms, prob.t_span)
        # which observation rows belong to each term (fixed: computed once, not per solve)
        self._rows = [[k for k, (t, _) in enumerate(self.owners) if t is term] for term in terms]
        wrt = "both" if self.y0_idx.size else "p"
        # full error control: the sensitivities must be stable and accurate on their own
        # (partial control lets an explicit method's S blow up at its stability limit)
        self._sens = SensitivitySolver(prob, self.t_obs, wrt, method, rtol, atol, "full")
        self.nsolves = 0
        self.failures, self.last_failure = 0, None
        self._hess = None  # the second-order solver of exact hessp, built on first use

    def with_tolerances(self, rtol, atol):
        """The same experiment solved at other tolerances (a new Objective)."""
        return Objective(
            self.prob,
            self.term,
            params=self.params,
            fit_y0=self.y0_idx,
            method=self.method,
            rtol=rtol,
            atol=atol,
            gradient=self.gradient_method,
            name=self.name,
        )

    def gradient_by(self, kind, theta):
        """The gradient at theta by ``"forward"`` sensitivities or the ``"adjoint"``.

        For cross-checks (:func:`sensitivity.verify_gradient`); bypasses the cache.
        """
        if kind not in ("forward", "adjoint"):
            raise ValueError(f"kind must be 'forward' or 'adjoint', got {kind!r}")
        theta = self._check_theta(theta)
        if kind == "forward" and self.has_integral:
            raise ValueError(
                f"{self.name}: integral objectives have no forward-sensitivity gradient; "
                "use kind='adjoint'"
            )
        if kind == "adjoint":
            if not (self._discrete_ok() or self.has_integral):
                raise ValueError(
                    f"{self.name}: the discrete adjoint needs an explicit method or BDF"
                )
            return self._by_adjoint(*self._split(theta)).grad
        saved, self.gradient_method = self.gradient_method, "forward"
        try:
            return self._evaluate(theta, frozenset({"value", "grad"})).grad
        finally:
            self.gradient_method = saved

    def _split(self, theta):
        p = self.prob.p.copy()
        p[self.params] = theta[: self.params.size]
        y0 = self.prob.y0.copy()
        y0[self.y0_idx] = theta[self.params.size :]
        return p, y0

    def _evaluate(self, theta, need):
        p, y0 = self._split(theta)
        if not need & {"grad", "rjac"} and not self.has_integral and self._plain_values():
            return self._by_plain_solve(theta, p, y0)
        if need <= {"value", "grad"} and self._adjoint_ok():
            return self._by_adjoint(p, y0)
        fs = self._sens(p=p, y0=y0)
        self.nsolves += 1
        if not fs.success:
            return self._failed(theta, fs.message)
        # the sensitivity columns that theta moves: parameters, then initial values
        S = fs.dy_dp[:, :, self.params]
        if self.y0_idx.size:
            S = np.concatenate([S, fs.dy_dy0[:, :, self.y0_idx]], axis=2)
        out = Evaluation(value=0.0, grad=np.zeros(self.n_params))
        res, jac = [], []
        for term, rows in zip(self.terms, self._rows):
            Y = fs.y[rows]
            if term.has_residuals:
                r = term.residuals(Y, p)
                J = term.residual_jac(Y, S[rows], p)
                J[:, : self.params.size] += term.residual_jac_p(Y, p)[:, self.params]
                res.append(r)
                jac.append(J)
                out.value += 0.5 * float(r @ r)
                out.grad += J.T @ r
            else:
                for k in rows:
                    v, g_y, g_p = term.point(self.owners[k][1], fs.y[k], p)
                    out.value += v
                    out.grad += S[k].T @ g_y
                    out.grad[: self.params.size] += g_p[self.params]
        if self.has_residuals:
            out.residuals = np.concatenate(res)
            out.rjac = np.vstack(jac)
        return out

    def _hessp(self, theta, u):
        """Exact ``d2F/dtheta2 u`` by second-order forward sensitivities
        (:mod:`sensitivity.sens.second_order`): one augmented solve per product."""
        # imported here: the second-order duals register their overloads on import
        from sensitivity.sens.second_order import HessianVectorSolver, term_hvp

        if self.has_integral:
            raise TypeError(
                f"{self.name}: exact Hessian products are not built for integral "
                "objectives; use kind='gauss-newton'"
            )
        if self._hess is None:
            self._hess = HessianVectorSolver(
                self.prob, self.t_obs, self.params, self.y0_idx, self.method, self.rtol,
                self.atol,
            )  # fmt: skip
        p, y0 = self._split(theta)
        so = self._hess(p, y0, u)
        self.nsolves += 1
        if not so.success:
            return np.full(self.n_params, np.nan)
        E = np.zeros((self.prob.m, self.n_params))
        E[self.params, np.arange(self.params.size)] = 1.0
        vp = E @ u
        out = np.zeros(self.n_params)
        for term, rows in zip(self.terms, self._rows):
            out += term_hvp(
                term, so.y[rows], so.S[rows], so.w[rows], so.C[rows], p, E, vp,
                self.prob.compile,
            )  # fmt: skip
        return out

    def _plain_values(self):
        """Value or residuals alone from a plain solve, when a derivative would cost more
        than a solve and a half: the gradient comes by the adjoint, or there are more
        unknowns than one chunk of forward sensitivities (with few, one sensitivity solve
        serves the value and the Jacobian that least_squares asks for next)."""
        return self._adjoint_ok() or self.n_params > CHUNK

    def _by_plain_solve(self, theta, p, y0):
        sol = self._sens.base(p=p, y0=y0)
        self.nsolves += 1
        if not sol.success:
            return self._failed(theta, sol.message)
        out, res = Evaluation(value=0.0), []
        for term, rows in zip(self.terms, self._rows):
            if term.has_residuals:
                r = term.residuals(sol.y[rows], p)
                res.append(r)
                out.value += 0.5 * float(r @ r)
            else:
                out.value += sum(term.point(self.owners[k][1], sol.y[k], p)[0] for k in rows)
        if self.has_residuals:
            out.residuals = np.concatenate(res)
        return out

    def _failed(self, theta, message):
        """A solve that failed (a trial point of the optimiser where the model blows up).

        The value is inf and the residuals NaN, so that scipy's trust-region and line
        searches step back; the failure is counted and its message kept in
        ``last_failure`` (fit() at a failing start point raises scipy's error).
        """
        self.failures += 1
        self.last_failure = f"{self.name}: the solve failed at theta = {theta}: {message}"
        n_res = self.n_data if self.has_residuals else 0
        return Evaluation(
            value=np.inf,
            grad=np.full(self.n_params, np.nan),
            residuals=np.full(n_res, np.nan),
            rjac=np.full((n_res, self.n_params), np.nan),
        )

    def _discrete_ok(self):
        """A discrete adjoint exists for the method: explicit RK or BDF (not "auto")."""
        meth = self._sens.base.method
        if self._sens.base.auto:
            return False
        return isinstance(meth, BDF) or not getattr(meth, "stiff", True)

    def _adjoint_ok(self):
        """An adjoint serves when it pays off (or an integral term needs it)."""
        if self.has_integral:
            return True
        if self.gradient_method == "forward" or not self._discrete_ok():
            return False
        return self.gradient_method == "adjoint" or self.n_params > 8

    def _by_adjoint(self, p, y0):
        base = self._sens.base
        r = adjoint_gradient(
            self.prob,
            self.term,
            kind="discrete" if self._discrete_ok() else "continuous",
            method="auto" if base.auto else base.method,
            rtol=self.rtol,
            atol=self.atol,
            p=p,
            y0=y0,
        )
        if not r.success:
            raise RuntimeError(f"{self.name}: the solve failed: {r.message}")
        self.nsolves += 1
        g = np.concatenate([r.grad_p[self.params], r.grad_y0[self.y0_idx]])
        return Evaluation(value=r.value, grad=g)
