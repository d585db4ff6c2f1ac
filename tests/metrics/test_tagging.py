"""tinydgm.metrics.tagging: many-to-one, one-to-one, V-measure and the top words of induced states."""
import numpy as np
import pytest

from tinydgm.metrics.tagging import many_to_one, one_to_one, tagging_scores, top_words, v_measure


def test_tagging_metrics():
    gold = np.array(list("aabbbcc"))
    assert many_to_one([5, 5, 7, 7, 7, 9, 9], gold) == 1.0          # a relabelling is perfect
    assert one_to_one([5, 5, 7, 7, 7, 9, 9], gold) == 1.0
    assert v_measure([5, 5, 7, 7, 7, 9, 9], gold) == pytest.approx(1.0)
    split = [0, 1, 2, 3, 4, 5, 6]                                    # one state per token
    assert many_to_one(split, gold) == 1.0 and one_to_one(split, gold) == pytest.approx(3 / 7)
    assert v_measure([0] * 7, gold) == 0.0                           # one state for all: no information
    s = tagging_scores([0, 0, 1, 1, 1, 1, 0], gold)
    assert s["m1"] == pytest.approx(5 / 7) and 0 < s["vm"] < 1
    assert top_words([0, 0, 1], ["a", "a", "b"], k=1) == {0: [("a", 2)], 1: [("b", 1)]}
