import numpy as np

from benchmark.runner.memorization import half_indices, memorization_scores


def test_scores_are_in_minus_out_accuracy():
    # 4 models x 3 examples; example 0 right only when seen (memorised), 1 always right, 2 right when unseen
    inside = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 0], [0, 0, 1]], dtype=bool)
    correct = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1], [0, 1, 0]], dtype=bool)
    mem = memorization_scores(correct, inside)
    np.testing.assert_allclose(mem, [1.0, 0.0, -1.0])


def test_brute_force_agrees_and_missing_sides_score_zero():
    rng = np.random.default_rng(0)
    inside = rng.random((9, 40)) < 0.5
    inside[:, 0] = True  # never left out
    correct = rng.random((9, 40)) < 0.7
    mem = memorization_scores(correct, inside)
    for i in range(1, 40):
        want = correct[inside[:, i], i].mean() - correct[~inside[:, i], i].mean()
        assert abs(mem[i] - want) < 1e-12
    assert mem[0] == 0.0


def test_halves_are_seeded_and_half_sized():
    a, b = half_indices(101, 7, 0), half_indices(101, 7, 1)
    assert len(a) == 50 and np.array_equal(a, half_indices(101, 7, 0)) and not np.array_equal(a, b)
    assert np.all(np.diff(a) > 0)
