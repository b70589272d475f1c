"""Bootstrap CIs cover the truth at about the nominal rate over repeated synthetic draws.

40 draws of a 6 x 6 sweep (36 runs, 1% log-normal noise) from the published Chinchilla law; 100 resamples each;
95% percentile intervals. The check is a loose band (>= 80%): with 40 draws the binomial spread alone is about
+-7%, and the percentile bootstrap of a nonlinear fit at this size is expected to run a little narrow. Intervals
that ignored the fit's uncertainty (or resampled wrongly) would cover far less often, so this can fail.
Intervals that are too WIDE would pass a coverage floor, so their width is checked too: the mean 95% width of
alpha and beta against the spread of the point estimates over the 40 draws (3.92 standard deviations for a normal
sampling distribution) must be within a factor of 2.
"""
from __future__ import annotations

import numpy as np
import pytest

from fitting import bootstrap as bs
from fitting import fit_approach3

from .test_fitting import TRUE, synth


@pytest.mark.slow
def test_bootstrap_ci_coverage():
    truth = dict(TRUE, a=TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"]))
    keys = ("alpha", "beta", "a", "E")
    hits = {k: 0 for k in keys}
    points, widths = {k: [] for k in ("alpha", "beta")}, {k: [] for k in ("alpha", "beta")}
    n_draws = 40
    for draw in range(n_draws):
        df = synth(6, 6, 0.01, 1000 + draw)
        full = fit_approach3(df.params, df.tokens, df.loss, starts="small")
        assert full.success, full.message
        b = bs.bootstrap(df.params, df.tokens, df.loss, full, n_boot=100, seed=draw, starts="small", jobs=2,
                         n_grid_starts=2)
        assert b.n_converged >= 95
        d = bs.derived_samples(b.samples)
        for k in keys:
            lo, hi = bs.percentile_ci(d[k], 0.95)
            hits[k] += lo <= truth[k] <= hi
            if k in points:
                points[k].append(full.params[k])
                widths[k].append(hi - lo)
    cover = {k: v / n_draws for k, v in hits.items()}
    print("coverage:", cover)
    for k in keys:
        assert cover[k] >= 0.80, cover
    ratio = {k: float(np.mean(widths[k]) / (3.92 * np.std(points[k], ddof=1))) for k in points}
    print("mean CI width / (3.92 sd of the point estimates):", ratio)
    for k in points:
        assert 0.5 < ratio[k] < 2.0, ratio
