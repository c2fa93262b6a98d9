"""Finding poisoned training samples from a trained model, so that they can be forgotten.

Three detectors score every training sample; the highest scores are the suspects:

- ``spectral`` (spectral signatures; Tran, Li, Madry, NeurIPS 2018): per label, the squared projection of a sample's
  centred penultimate-layer features on their top singular vector. A backdoor leaves a strong direction in the
  features of the samples relabelled to the target; the poisoned ones lie far along it.
- ``activation-clustering`` (Chen et al., "Detecting backdoor attacks on deep neural networks by activation
  clustering", 2018): per label, the penultimate features reduced to 10 principal components and split in two by
  k-means; a cluster holding a small share of the label (at most ``--max-cluster``, default 0.35) is suspect, its
  samples scored by their distance to the other cluster's centre.
- ``loss``: the per-sample cross-entropy on the (possibly poisoned) training label; mislabelled samples a model did
  not fit stand out (label flips). A backdoor's samples are fitted easily, so this one is a baseline for them.

:func:`detect` returns the suspected ids (the top ``budget`` scores: by default 1.5 x the expected poisoned share
``rate`` x the training set, as Tran et al. remove 1.5 epsilon n) and, where the data records its poisoned ids,
:func:`precision_recall` scores them. ``unlearn detect`` writes the ids to a file for ``--forget ids:FILE``.
"""

from unlearnkit.detect.detectors import DETECTORS, Detection, detect, precision_recall

__all__ = ["DETECTORS", "Detection", "detect", "precision_recall"]
