"""special.erf (Cody's rational approximations) against the standard library's erf."""
import math

import numpy as np
import pytest
import scipy.special

from scratchzoo.special import erf

# a dense grid, the branch boundaries of the approximation (0.46875 and 4), tiny and huge |x|
GRID = np.concatenate([np.linspace(-8, 8, 16001), np.array([0.46875, 4.0, 1e-300, 1e-10, 5.0, 6.0, 26.0, 27.0,
                                                            1e3, 1e300, np.inf])])
GRID = np.concatenate([GRID, -GRID, np.nextafter([0.46875, 4.0], 0), np.nextafter([0.46875, 4.0], 10)])


def test_erf_float64_matches_math_erf_to_1e_15() -> None:
    expected = np.array([math.erf(v) for v in GRID])
    got = erf(GRID)
    assert got.dtype == np.float64 and got.shape == GRID.shape
    worst = np.max(np.abs(got - expected))
    assert worst <= 1e-15, f"max abs error {worst:.3g} at x = {GRID[np.argmax(np.abs(got - expected))]!r}"


def test_erf_relative_accuracy_near_zero() -> None:
    x = np.geomspace(1e-300, 0.46875, 2000)
    np.testing.assert_allclose(erf(x), [math.erf(v) for v in x], rtol=1e-15, atol=0)


def test_erf_is_odd_bounded_and_exact_at_the_ends() -> None:
    x = np.linspace(0, 30, 3001)
    np.testing.assert_array_equal(erf(-x), -erf(x))
    assert np.all(np.abs(erf(x)) <= 1.0) and np.all(np.diff(erf(x)) >= 0)
    assert erf(np.array([np.inf, -np.inf, 0.0])).tolist() == [1.0, -1.0, 0.0]
    assert np.isnan(erf(np.array([np.nan]))[0])


@pytest.mark.parametrize("shape", [(), (3,), (2, 3, 4)])
def test_erf_float32_keeps_dtype_and_shape(shape) -> None:
    x = (np.random.default_rng(0).standard_normal(shape) * 2).astype(np.float32)
    got = erf(x)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, scipy.special.erf(x.astype(np.float64)), rtol=0, atol=2e-7)


def test_erf_of_ints_and_lists_is_float64() -> None:
    assert erf(np.array([0, 1, -2])).dtype == np.float64
    np.testing.assert_allclose(erf([0.5, 1.0]), [math.erf(0.5), math.erf(1.0)], rtol=1e-15)
