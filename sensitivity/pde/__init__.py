"""PDE toolkit: method-of-lines operators and explicit wave propagation with adjoints.

* grids (:mod:`~sensitivity.pde.grids`): :class:`Grid1D`, :class:`RadialGrid1D`,
  :class:`Grid2D`;
* operators (:mod:`~sensitivity.pde.operators`) with sparsity patterns:
  :func:`flux_divergence` (Cartesian and cylindrical), :func:`gradient`,
  :func:`laplacian` (orders 2 and 4);
* boundary conditions (:mod:`~sensitivity.pde.boundary`): :func:`Dirichlet`,
  :func:`Neumann`, :func:`Flux`, and the absorbing :func:`sponge`;
* method of lines (:mod:`~sensitivity.pde.mol`): :func:`diffusion_system` ->
  :class:`MOLSystem` -> ``ODEProblem`` with ``jac_sparsity``/``param_sparsity``;
* 2-D acoustic waves (:mod:`~sensitivity.pde.wave`): :class:`Acoustic2D` with
  forward modelling, tangent-linear (Born) model, the exact discrete adjoint and
  checkpointed gradients (compiled sweeps in :mod:`~sensitivity.pde.wave_kernels`;
  :func:`free_workspace` frees the store that store-all gradients keep between
  calls); point sources/receivers (:mod:`~sensitivity.pde.points`);
* full-waveform inversion (:mod:`~sensitivity.pde.fwi`): :class:`FWIProblem`
  (misfit and velocity gradient summed over shots through an executor; as an
  inversion-layer objective, :class:`ShotObjective` per shot) and the
  :func:`camembert` benchmark set-up.
"""

from sensitivity.pde.boundary import BC, Dirichlet, Flux, Neumann, sponge
from sensitivity.pde.fwi import FWIProblem, ShotObjective, camembert
from sensitivity.pde.grids import Grid1D, Grid2D, RadialGrid1D
from sensitivity.pde.mol import MOLSystem, diffusion_system
from sensitivity.pde.operators import (
    flux_divergence,
    flux_divergence_pattern,
    gradient,
    gradient_pattern,
    laplacian,
    laplacian_pattern,
)
from sensitivity.pde.points import PointSet, point_set
from sensitivity.pde.reference import forward_numpy
from sensitivity.pde.wave import Acoustic2D, GradientResult, cfl_dt, free_workspace, ricker

__all__ = [
    "Acoustic2D",
    "BC",
    "Dirichlet",
    "FWIProblem",
    "Flux",
    "GradientResult",
    "Grid1D",
    "Grid2D",
    "MOLSystem",
    "Neumann",
    "PointSet",
    "RadialGrid1D",
    "ShotObjective",
    "camembert",
    "cfl_dt",
    "diffusion_system",
    "flux_divergence",
    "flux_divergence_pattern",
    "forward_numpy",
    "free_workspace",
    "gradient",
    "gradient_pattern",
    "laplacian",
    "laplacian_pattern",
    "point_set",
    "ricker",
    "sponge",
]
