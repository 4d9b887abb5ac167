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
    P : ndarray, shape (s + d, q)
        Interpolant coefficients, ``b_i(theta) = sum_j P[i, j] theta**(j+1)``.
    order, err_order : int
        Order of the propagated solution; the step-size controller uses the exponent
        ``1 / (err_order + 1)``.
    citation : str
    e3 : ndarray, shape (s,), optional
        Second error weights: when given, the error is Hairer's combined estimate of DOP853,
        ``|E5|^2 / sqrt(n (|E5|^2 + 0.01 |E3|^2))`` (HNW I, II.10).

    Rows of ``a`` (and ``c``) beyond ``s = len(b)`` are *dense-output stages*, evaluated only
    when an interpolant is needed; a first dense row equal to ``b`` with c = 1 is
    f(t_new, y_new), which then also starts the next step (``reuse_dense_stage``).
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
    e3: np.ndarray | None = None
    n_stages: int = field(init=False)
    n_dense_stages: int = field(init=False)
    reuse_dense_stage: bool = field(init=False)
    fsal: bool = field(init=False)
    explicit: bool = field(init=False)

    def __post_init__(self):
        if self.e3 is None:
            object.__setattr__(self, "e3", np.zeros(len(self.b)))
        for key in ("a", "b", "c", "e", "e3", "P"):
            arr = np.ascontiguousarray(getattr(self, key), dtype=np.float64)
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)
        s, st = self.b.shape[0], self.a.shape[0]
        assert self.a.shape == (st, st) and st >= s, f"{self.name}: a must be square, >= {s}"
        assert self.c.shape == (st,), f"{self.name}: c must have {st} entries"
        assert self.e.shape == (s,) and self.e3.shape == (s,), f"{self.name}: e, e3 shapes"
        assert self.P.shape[0] == st, f"{self.name}: P must have {st} rows"
        assert np.allclose(self.a.sum(axis=1), self.c, atol=_TOL), f"{self.name}: sum(a) != c"
        assert abs(self.b.sum() - 1.0) < _TOL, f"{self.name}: sum(b) != 1"
        assert abs(self.e.sum()) < _TOL, f"{self.name}: sum(e) != 0"
        assert abs(self.e3.sum()) < _TOL, f"{self.name}: sum(e3) != 0"
        b_full = np.r_[self.b, np.zeros(st - s)]
        assert np.allclose(self.P.sum(axis=1), b_full, atol=_TOL), f"{self.name}: P(1) != b"
        object.__setattr__(self, "n_stages", s)
        object.__setattr__(self, "n_dense_stages", st - s)
        object.__setattr__(self, "explicit", bool(np.all(np.triu(self.a) == 0.0)))
        # first same as last: the last stage is evaluated at y_new, so it is f(t_new, y_new)
        fsal = bool(st == s and self.c[-1] == 1.0 and np.array_equal(self.a[-1, :s], self.b))
        object.__setattr__(self, "fsal", fsal)
        reuse = bool(st > s and self.c[s] == 1.0 and np.array_equal(self.a[s, :s], self.b))
        object.__setattr__(self, "reuse_dense_stage", reuse)
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


def _dop853():
    """DOP853 of Hairer, Norsett & Wanner I (II.10), coefficients of Prince & Dormand (1981).

    Stages 1-12 advance the solution; stage 13 is f(t_new, y_new); stages 14-16 serve only the
    7th-order dense output, whose nested form (``dense_out`` of DOP853) is expanded here
    into the polynomials b_i(theta) of :class:`ButcherTableau`.
    """
    c = np.zeros(16)
    c[1:11] = [
        0.526001519587677318785587544488e-01,
        0.789002279381515978178381316732e-01,
        0.118350341907227396726757197510e00,
        0.281649658092772603273242802490e00,
        1 / 3,
        0.25,
        4 / 13,
        127 / 195,
        0.6,
        6 / 7,
    ]
    c[11], c[12], c[13:] = 1.0, 1.0, [0.1, 0.2, 7 / 9]
    a = np.zeros((16, 16))
    rows = {  # row: {column: value}, 1-based as in the published tables
        2: {1: 5.26001519587677318785587544488e-2},
        3: {1: 1.97250569845378994544595329183e-2, 2: 5.91751709536136983633785987549e-2},
        4: {1: 2.95875854768068491816892993775e-2, 3: 8.87627564304205475450678981324e-2},
        5: {
            1: 2.41365134159266685502369798665e-1,
            3: -8.84549479328286085344864962717e-1,
            4: 9.24834003261792003115737966543e-1,
        },
        6: {
            1: 3.7037037037037037037037037037e-2,
            4: 1.70828608729473871279604482173e-1,
            5: 1.25467687566822425016691814123e-1,
        },
        7: {
            1: 3.7109375e-2,
            4: 1.70252211019544039314978060272e-1,
            5: 6.02165389804559606850219397283e-2,
            6: -1.7578125e-2,
        },
        8: {
            1: 3.70920001185047927108779319836e-2,
            4: 1.70383925712239993810214054705e-1,
            5: 1.07262030446373284651809199168e-1,
            6: -1.53194377486244017527936158236e-2,
            7: 8.27378916381402288758473766002e-3,
        },
        9: {
            1: 6.24110958716075717114429577812e-1,
            4: -3.36089262944694129406857109825e0,
            5: -8.68219346841726006818189891453e-1,
            6: 2.75920996994467083049415600797e1,
            7: 2.01540675504778934086186788979e1,
            8: -4.34898841810699588477366255144e1,
        },
        10: {
            1: 4.77662536438264365890433908527e-1,
            4: -2.48811461997166764192642586468e0,
            5: -5.90290826836842996371446475743e-1,
            6: 2.12300514481811942347288949897e1,
            7: 1.52792336328824235832596922938e1,
            8: -3.32882109689848629194453265587e1,
            9: -2.03312017085086261358222928593e-2,
        },
        11: {
            1: -9.3714243008598732571704021658e-1,
            4: 5.18637242884406370830023853209e0,
            5: 1.09143734899672957818500254654e0,
            6: -8.14978701074692612513997267357e0,
            7: -1.85200656599969598641566180701e1,
            8: 2.27394870993505042818970056734e1,
            9: 2.49360555267965238987089396762e0,
            10: -3.0467644718982195003823669022e0,
        },
        12: {
            1: 2.27331014751653820792359768449e0,
            4: -1.05344954667372501984066689879e1,
            5: -2.00087205822486249909675718444e0,
            6: -1.79589318631187989172765950534e1,
            7: 2.79488845294199600508499808837e1,
            8: -2.85899827713502369474065508674e0,
            9: -8.87285693353062954433549289258e0,
            10: 1.23605671757943030647266201528e1,
            11: 6.43392746015763530355970484046e-1,
        },
        14: {
            1: 5.61675022830479523392909219681e-2,
            7: 2.53500210216624811088794765333e-1,
            8: -2.46239037470802489917441475441e-1,
            9: -1.24191423263816360469010140626e-1,
            10: 1.5329179827876569731206322685e-1,
            11: 8.20105229563468988491666602057e-3,
            12: 7.56789766054569976138603589584e-3,
            13: -8.298e-3,
        },
        15: {
            1: 3.18346481635021405060768473261e-2,
            6: 2.83009096723667755288322961402e-2,
            7: 5.35419883074385676223797384372e-2,
            8: -5.49237485713909884646569340306e-2,
            11: -1.08347328697249322858509316994e-4,
            12: 3.82571090835658412954920192323e-4,
            13: -3.40465008687404560802977114492e-4,
            14: 1.41312443674632500278074618366e-1,
        },
        16: {
            1: -4.28896301583791923408573538692e-1,
            6: -4.69762141536116384314449447206e0,
            7: 7.68342119606259904184240953878e0,
            8: 4.06898981839711007970213554331e0,
            9: 3.56727187455281109270669543021e-1,
            13: -1.39902416515901462129418009734e-3,
            14: 2.9475147891527723389556272149e0,
            15: -9.15095847217987001081870187138e0,
        },
    }
    for i, row in rows.items():
        for j, v in row.items():
            a[i - 1, j - 1] = v
    b = np.zeros(12)
    b[[0, 5, 6, 7, 8, 9, 10, 11]] = [
        5.42937341165687622380535766363e-2,
        4.45031289275240888144113950566e0,
        1.89151789931450038304281599044e0,
        -5.8012039600105847814672114227e0,
        3.1116436695781989440891606237e-1,
        -1.52160949662516078556178806805e-1,
        2.01365400804030348374776537501e-1,
        4.47106157277725905176885569043e-2,
    ]
    a[12, :12] = b  # stage 13 = f(t_new, y_new)
    e = np.zeros(12)
    e[[0, 5, 6, 7, 8, 9, 10, 11]] = [
        0.1312004499419488073250102996e-01,
        -0.1225156446376204440720569753e01,
        -0.4957589496572501915214079952e00,
        0.1664377182454986536961530415e01,
        -0.3503288487499736816886487290e00,
        0.3341791187130174790297318841e00,
        0.8192320648511571246570742613e-01,
        -0.2235530786388629525884427845e-01,
    ]
    e3 = b.copy()  # b minus the 3rd-order weights bhh on stages 1, 9, 12
    e3[[0, 8, 11]] -= [
        0.244094488188976377952755905512e00,
        0.733846688281611857341361741547e00,
        0.220588235294117647058823529412e-01,
    ]
    d = np.zeros((4, 16))
    cols = [0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    d[0, cols] = [
        -0.84289382761090128651353491142e01,
        0.56671495351937776962531783590e00,
        -0.30689499459498916912797304727e01,
        0.23846676565120698287728149680e01,
        0.21170345824450282767155149946e01,
        -0.87139158377797299206789907490e00,
        0.22404374302607882758541771650e01,
        0.63157877876946881815570249290e00,
        -0.88990336451333310820698117400e-01,
        0.18148505520854727256656404962e02,
        -0.91946323924783554000451984436e01,
        -0.44360363875948939664310572000e01,
    ]
    d[1, cols] = [
        0.10427508642579134603413151009e02,
        0.24228349177525818288430175319e03,
        0.16520045171727028198505394887e03,
        -0.37454675472269020279518312152e03,
        -0.22113666853125306036270938578e02,
        0.77334326684722638389603898808e01,
        -0.30674084731089398182061213626e02,
        -0.93321305264302278729567221706e01,
        0.15697238121770843886131091075e02,
        -0.31139403219565177677282850411e02,
        -0.93529243588444783865713862664e01,
        0.35816841486394083752465898540e02,
    ]
    d[2, cols] = [
        0.19985053242002433820987653617e02,
        -0.38703730874935176555105901742e03,
        -0.18917813819516756882830838328e03,
        0.52780815920542364900561016686e03,
        -0.11573902539959630126141871134e02,
        0.68812326946963000169666922661e01,
        -0.10006050966910838403183860980e01,
        0.77771377980534432092869265740e00,
        -0.27782057523535084065932004339e01,
        -0.60196695231264120758267380846e02,
        0.84320405506677161018159903784e02,
        0.11992291136182789328035130030e02,
    ]
    d[3, cols] = [
        -0.25693933462703749003312586129e02,
        -0.15418974869023643374053993627e03,
        -0.23152937917604549567536039109e03,
        0.35763911791061412378285349910e03,
        0.93405324183624310003907691704e02,
        -0.37458323136451633156875139351e02,
        0.10409964950896230045147246184e03,
        0.29840293426660503123344363579e02,
        -0.43533456590011143754432175058e02,
        0.96324553959188282948394950600e02,
        -0.39177261675615439165231486172e02,
        -0.14972683625798562581422125276e03,
    ]
    return ButcherTableau(
        name="DP8",
        a=a,
        b=b,
        c=c,
        e=e,
        e3=e3,
        P=_dop853_interpolant(b, d),
        order=8,
        err_order=7,
        citation="Prince & Dormand (1981); DOP853 of Hairer, Norsett & Wanner I",
    )


def _dop853_interpolant(b, d):
    """Expand DOP853's nested dense output into b_i(theta) (rows of P, powers 1..7).

    y(theta) = r1 + s (r2 + s1 (r3 + s (r4 + s1 (r5 + s (r6 + s1 (r7 + s r8)))))), s1 = 1 - s,
    with r2 = h sum b K, r3 = h K_1 - r2, r4 = r2 - h K_13 - r3, r_{5..8} = h sum d K.
    """
    from numpy.polynomial import polynomial as poly

    P = np.zeros((16, 7))
    s, s1 = np.array([0.0, 1.0]), np.array([1.0, -1.0])
    for i in range(16):
        w2 = b[i] if i < 12 else 0.0
        w3 = (i == 0) - w2
        w4 = w2 - (i == 12) - w3
        # nest from the inside: r7 + s r8, then r6 + s1 (...), ... up to r2 + s1 (...)
        inner = poly.polyadd([d[2, i]], poly.polymul(s, [d[3, i]]))
        inner = poly.polyadd([d[1, i]], poly.polymul(s1, inner))
        inner = poly.polyadd([d[0, i]], poly.polymul(s, inner))
        inner = poly.polyadd([w4], poly.polymul(s1, inner))
        inner = poly.polyadd([w3], poly.polymul(s, inner))
        inner = poly.polyadd([w2], poly.polymul(s1, inner))
        full = poly.polymul(s, inner)  # zero constant term
        P[i, : len(full) - 1] = full[1:]
    return P


DP8 = _dop853()

TABLEAUS = {"DP5": DP5, "Tsit5": TSIT5, "DP8": DP8}
