"""Butcher tableaus of the explicit Runge-Kutta methods, as self-checking data.

An explicit s-stage method advances ``y' = f(t, y)`` by one step ``h``::

    K_i   = f(t + c_i h, y + h sum_{j<i} a_ij K_j)      i = 1..s
    y_new = y + h sum_i b_i K_i                         (order ``order``)
    err   = h sum_i e_i K_i                             (e = b - b_hat, order ``err_order``)

and its free continuous extension (no extra stages) is, for theta in [0, 1]::

    y(t + theta h) = y + h sum_i K_i sum_j P_ij theta^(j+1)

Tableau as data (diffrax ``dopri5.py`` style)::

    c_1 | a_11 ... a_1s            c : ``c``  (s,)
     .  |  .         .             a : ``a``  (s, s), strictly lower triangular
    c_s | a_s1 ... a_ss            b : ``b``  (s,)
    ----+--------------            e : ``e``  (s,)  error weights b - b_hat
        | b_1  ...  b_s            P : ``P``  (s, q) interpolant, sum_j P_ij = b_i
        | e_1  ...  e_s

``__post_init__`` checks the invariants (row sums of ``a`` equal ``c``, ``sum(b) == 1``,
``sum(e) == 0``, the interpolant reproduces ``b`` at theta = 1, shapes) and derives
``n_stages``, ``fsal`` and ``explicit`` from the numbers.

References
----------
.. [1] J. R. Dormand, P. J. Prince, "A family of embedded Runge-Kutta formulae",
   J. Comput. Appl. Math. 6 (1980) 19-26.
.. [2] L. F. Shampine, "Some practical Runge-Kutta formulas", Math. Comp. 46 (1986)
   135-150 (the DP5 continuous extension).
.. [3] Ch. Tsitouras, "Runge-Kutta pairs of order 5(4) satisfying only the first column
   simplifying assumption", Comput. Math. Appl. 62 (2011) 770-775.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_TOL = 1e-12  # invariants hold to rounding of the published decimals


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit embedded Runge-Kutta pair with a free dense-output interpolant.

    Parameters
    ----------
    name : str
        Name used in :data:`sensitivity.ode.solve.METHODS`.
    a : ndarray, shape (s, s)
    b : ndarray, shape (s,)
    c : ndarray, shape (s,)
    e : ndarray, shape (s,)
        Error weights ``b - b_hat``.
    P : ndarray, shape (s, q)
        Interpolant coefficients, ``b_i(theta) = sum_j P[i, j] theta**(j+1)``.
    order, err_order : int
        Orders of the propagated solution and of the embedded one.
    citation : str
    """

    name: str
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    e: np.ndarray
    P: np.ndarray
    order: int
    err_order: int
    citation: str
    n_stages: int = field(init=False)
    fsal: bool = field(init=False)
    explicit: bool = field(init=False)

    def __post_init__(self):
        for key in ("a", "b", "c", "e", "P"):
            arr = np.ascontiguousarray(getattr(self, key), dtype=np.float64)
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)
        s = self.b.shape[0]
        assert self.a.shape == (s, s), f"{self.name}: a must be ({s}, {s})"
        assert self.c.shape == (s,) and self.e.shape == (s,), f"{self.name}: c, e shapes"
        assert self.P.shape[0] == s, f"{self.name}: P must have {s} rows"
        assert np.allclose(self.a.sum(axis=1), self.c, atol=_TOL), f"{self.name}: sum(a) != c"
        assert abs(self.b.sum() - 1.0) < _TOL, f"{self.name}: sum(b) != 1"
        assert abs(self.e.sum()) < _TOL, f"{self.name}: sum(e) != 0"
        assert np.allclose(self.P.sum(axis=1), self.b, atol=_TOL), f"{self.name}: P(1) != b"
        object.__setattr__(self, "n_stages", s)
        object.__setattr__(self, "explicit", bool(np.all(np.triu(self.a) == 0.0)))
        # first same as last: the last stage is evaluated at y_new, so it is f(t_new, y_new)
        fsal = bool(self.c[-1] == 1.0 and np.array_equal(self.a[-1], self.b))
        object.__setattr__(self, "fsal", fsal)
        assert self.explicit, f"{self.name}: a must be strictly lower triangular"


def _lower(rows):
    """Strictly lower-triangular (s, s) matrix from its rows 2..s (row 1 is zero)."""
    s = len(rows) + 1
    a = np.zeros((s, s))
    for i, row in enumerate(rows, start=1):
        a[i, : len(row)] = row
    return a


DP5 = ButcherTableau(
    name="DP5",
    c=[0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0],
    a=_lower(
        [
            [1 / 5],
            [3 / 40, 9 / 40],
            [44 / 45, -56 / 15, 32 / 9],
            [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
            [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
            [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
        ]
    ),
    b=[35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0],
    e=[71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40],
    # Shampine's (1986) 4th-order continuous extension, in powers theta^1..theta^4
    P=[
        [1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799],
        [0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072],
        [
            0.0,
            127303824393 / 49829197408,
            -318862633887 / 49829197408,
            701980252875 / 199316789632,
        ],
        [0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844],
        [0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423],
    ],
    order=5,
    err_order=4,
    citation="Dormand & Prince (1980); dense output Shampine (1986)",
)

TSIT5 = ButcherTableau(
    name="Tsit5",
    c=[0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0],
    a=_lower(
        [
            [0.161],
            [-0.008480655492356989, 0.335480655492357],
            [2.897153057105493, -6.359448489975075, 4.3622954328695815],
            [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525],
            [
                5.86145544294642,
                -12.92096931784711,
                8.159367898576159,
                -0.071584973281401,
                -0.028269050394068383,
            ],
            [
                0.09646076681806523,
                0.01,
                0.4798896504144996,
                1.379008574103742,
                -3.290069515436081,
                2.324710524099774,
            ],
        ]
    ),
    b=[
        0.09646076681806523,
        0.01,
        0.4798896504144996,
        1.379008574103742,
        -3.290069515436081,
        2.324710524099774,
        0.0,
    ],
    e=[
        -0.00178001105222577714,
        -0.0008164344596567469,
        0.007880878010261995,
        -0.1447110071732629,
        0.5823571654525552,
        -0.45808210592918697,
        1 / 66,
    ],
    # Tsitouras' free 4th-order interpolant, b_i(theta) in powers theta^1..theta^4
    P=[
        [1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
        [0.0, 0.13169999999999998, -0.2234, 0.1017],
        [0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253],
        [0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
        [0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
        [0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
        [0.0, 1.5, -4.0, 2.5],
    ],
    order=5,
    err_order=4,
    citation="Tsitouras (2011), Comput. Math. Appl. 62, 770-775",
)

TABLEAUS = {"DP5": DP5, "Tsit5": TSIT5}
