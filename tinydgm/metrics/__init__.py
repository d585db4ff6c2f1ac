"""Metrics by kind: likelihood (`iw_nll`, `mean_bound`, `active_units`) and tagging (many-to-one, one-to-one, V-measure)."""
from tinydgm.metrics.likelihood import active_units, iw_nll, mean_bound
from tinydgm.metrics.tagging import many_to_one, one_to_one, tagging_scores, top_words, v_measure

__all__ = ["iw_nll", "mean_bound", "active_units", "many_to_one", "one_to_one", "v_measure",
           "tagging_scores", "top_words"]
