"""Differentiate a small model both ways and verify the derivatives.

The model is the free response of a damped oscillator (a seismometer's mass,
say) observed at 50 times,

    y(t; w, z, a) = a exp(-z w t) cos(w sqrt(1 - z^2) t),

and the objective is the least-squares misfit to noisy synthetic data. The
script computes the gradient of the misfit by reverse mode (the tape), the
Jacobian of the residuals by forward mode (dual numbers), checks that the two
agree (J^T r equals the gradient), runs the Taylor remainder test on the
gradient (rates of 2 mean it is right), and prints a Hessian-vector product
against the full Hessian.

Run: python examples/demo_derivatives.py
"""

import numpy as np

import sensitivity as sn

t = np.linspace(0.0, 10.0, 50)
p_true = np.array([2.0, 0.15, 1.3])  # angular frequency w, damping ratio z, amplitude a


def response(p):
    w, z, a = p[0], p[1], p[2]
    return a * np.exp(-z * w * t) * np.cos(w * np.sqrt(1.0 - z * z) * t)


data = response(p_true) + 0.02 * np.random.default_rng(1).standard_normal(t.size)


def residuals(p):
    return response(p) - data


def misfit(p):
    r = residuals(p)
    return 0.5 * np.sum(r * r)


def main():
    p = np.array([1.9, 0.2, 1.0])
    g_reverse = sn.grad(misfit, p)  # one backward sweep
    J = sn.jacobian(residuals, p, mode="forward")  # 3 parameters -> one dual sweep
    g_forward = J.T @ residuals(p)
    print(f"misfit at p = {p}: {misfit(p):.6f}")
    print(f"gradient, reverse mode : {g_reverse}")
    print(f"gradient, forward mode : {g_forward}")
    print(
        f"relative difference    : "
        f"{np.linalg.norm(g_reverse - g_forward) / np.linalg.norm(g_forward):.2e}"
    )
    taylor = sn.testing.taylor_test(misfit, p, g_reverse, eps0=1e-2)
    rates = ", ".join(f"{r:.3f}" for r in taylor.rates if np.isfinite(r))
    print(f"Taylor remainder rates : {rates}  (2 = correct gradient)")
    v = np.array([1.0, -2.0, 0.5])
    hv = sn.hvp(misfit, p, v)
    H = sn.hessian(misfit, p)
    print(f"Hessian-vector product : {hv}")
    print(f"max |Hv - H @ v|       : {np.abs(hv - H @ v).max():.2e}")
    print("verified" if taylor.passed and np.allclose(g_reverse, g_forward) else "FAILED")


if __name__ == "__main__":
    main()
