"""Figures of the benchmark page, drawn at build time from ``benchmarks/results``.

A benchmark that has something to plot prints one line ``json: {...}`` at the end of its
output; :func:`make` reads those lines from the saved results and writes PNGs into
``docs/_generated`` (not committed), so the figures always show the numbers of the tables
next to them.
"""

from __future__ import annotations

import json
from pathlib import Path


def records(results):
    """The ``json:`` payloads of every results file, merged into one dict."""
    out = {}
    for path in sorted(Path(results).glob("*.txt")):
        for line in path.read_text().splitlines():
            if line.startswith("json: "):
                out.update(json.loads(line[len("json: ") :]))
    return out


def make(results, outdir):
    """Write the figures whose data are present; return their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, outdir = records(results), Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    rows = data.get("diffusion")
    if rows:
        n = [r["n"] for r in rows]
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
        series = [("discrete", "sensitivity, discrete BDF adjoint", "o-"),
                  ("continuous", "sensitivity, continuous adjoint", "s--"),
                  ("casadi", "CasADi CVODES adjoint", "^-"),
                  ("diffrax_kvaerno5", "diffrax Kvaerno5, checkpointed adjoint", "d-"),
                  ("jax_odeint", "JAX odeint (backsolve; wrong from N = 64)", "x:"),
                  ("scipy_fd", "scipy BDF + differences", "v:")]  # fmt: skip
        for key, label, style in series:
            pts = [(r["n"], r[key]) for r in rows if key in r]
            if pts:
                a.loglog(*zip(*pts), style, label=label)
        a.loglog(n, [r["solve"] for r in rows], "k-", lw=0.8, label="sensitivity, one solve")
        a.set(xlabel="N (cells = parameters)", ylabel="seconds", title="gradient time")
        a.legend(fontsize=7)
        b.semilogx(n, [r["discrete"] / r["solve"] for r in rows], "o-", label="gradient / solve")
        b.axhline(5.0, color="r", lw=0.8, ls="--", label="target 5")
        b.set(xlabel="N", ylabel="ratio", title="discrete adjoint: gradient / solve", ylim=(0, 8))
        b.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(outdir / "adjoint_scaling.png", dpi=100)
        plt.close(fig)
        written.append("adjoint_scaling.png")
    rows = data.get("crossover")
    if rows:
        m = [r["m"] for r in rows]
        fig, ax = plt.subplots(figsize=(5, 3.6))
        ax.loglog(m, [r["forward"] / r["solve"] for r in rows], "o-", label="forward sensitivities")
        ax.loglog(m, [r["adjoint"] / r["solve"] for r in rows], "s-", label="discrete adjoint")
        ax.set(xlabel="parameters m (n = 2 states)", ylabel="gradient time / solve time",
               title="forward vs adjoint gradient")  # fmt: skip
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(outdir / "crossover.png", dpi=100)
        plt.close(fig)
        written.append("crossover.png")
    return written
