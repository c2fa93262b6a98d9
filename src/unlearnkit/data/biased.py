"""Derived data sources with a bias attribute: data where a spurious feature predicts the label in training only.

    colored-digits          scikit-learn's digits, coloured by class (attribute ``color``), 3x8x8
    colored-fashion-mnist   Fashion-MNIST coloured the same way (attribute ``color``), 3x28x28
    biased-tabular          synthetic features and a binary attribute ``sensitive`` that agrees with the label

The images follow ReBias' coloured MNIST (Bahng et al., ICML 2020, "Learning De-biased Representations with
Biased Representations"): class ``c`` has its own colour ``COLORS[c]``; a training (and validation) image takes its
class colour with probability ``rho`` and one of the other nine colours otherwise, a test image a uniformly random
colour (rho_test = 0.1). A model that learns the colour instead of the shape scores about ``rho`` on validation data
and about 10% on the test set: the gap that attribute removal must close. The grey image in [0, 1] is multiplied by
the colour (the background stays black), then each channel is standardised with the coloured training split's mean
and std, so every split is scaled alike.

Each bundle can re-render its samples with another attribute value (``DatasetBundle.counterfactual``: another
colour for the same grey image; for the tabular data, the attribute flipped and its proxy moved with it), which the
counterfactual metrics and ``counterfactual-top`` use.

Every split carries its attribute on every sample (``IndexedDataset.attributes``), and each source has a ``val``
split drawn from the training distribution: a fixed stratified 10% of the training samples (the same ids for every
``rho`` and ``seed``; ids never overlap across train, val and test). Everything random comes from the ``seed``
option, so the same options give the same data bit for bit.

    >>> from unlearnkit.data import load_dataset
    >>> bundle = load_dataset("colored-digits", data_options={"rho": 0.95})
    >>> bundle.spec.input_shape, sorted(bundle.train.attributes)
    ((3, 8, 8), ['color'])

The sources register themselves when ``unlearnkit.data`` is imported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unlearnkit.data.dataset import DatasetBundle, IndexedDataset
from unlearnkit.data.sources import (
    FASHION_HOW,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    DataOption,
    DataSource,
    digits_images,
    read_idx_dir,
    register_source,
    stratified_split,
)
from unlearnkit.errors import ConfigError

__all__ = ["COLORS", "COLOR_NAMES", "TABULAR_FEATURES", "VAL_FRACTION", "colorize", "draw_colors", "recolor"]

# One colour per class (RGB in [0, 1]), far apart so that colour alone identifies the class: ReBias' palette.
COLOR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "pink", "violet", "grey")
COLORS = torch.tensor([
    [255, 0, 0], [0, 255, 0], [0, 0, 255], [225, 225, 0], [225, 0, 225],
    [0, 255, 255], [255, 128, 0], [255, 0, 128], [128, 0, 255], [128, 128, 128],
], dtype=torch.float64) / 255.0
# Share of the training samples held out as the validation split (stratified, fixed: ids never move).
VAL_FRACTION = 0.1

RHO_HELP = "probability that a training (and val) image has its class colour; test colours are uniform (0.1)"
SEED_HELP = "seeds every random draw of this source (colours, features): same options, same data"


def _rngs(seed: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators from one seed, one per split: one split's size never moves another's draws."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def draw_colors(y: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    """A colour index per label: the class's own colour with probability ``rho``, otherwise one of the other nine
    uniformly (so each non-class colour has probability (1 - rho) / 9; ``rho`` = 0.1 is no bias at all)."""
    y = np.asarray(y, dtype=np.int64)
    aligned = rng.random(len(y)) < rho
    other = (y + rng.integers(1, len(COLORS), size=len(y))) % len(COLORS)
    return np.where(aligned, y, other)


def _channel_stats(gray: torch.Tensor, colors: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (N - 1 in the denominator, like ``Tensor.std``) of ``colorize``'s unscaled output,
    computed in float64 from per-image sums without building the coloured images (Fashion-MNIST's would take
    0.6 GB): channel c of image i is ``gray_i * COLORS[color_i, c]``."""
    g = gray.reshape(len(gray), -1)
    palette = COLORS[torch.from_numpy(colors)]  # [N, 3]
    count = g.numel()
    total = (palette * g.sum(1, keepdim=True, dtype=torch.float64)).sum(0)  # sums in float64, no float64 copy of g
    squares = (palette**2 * (g * g).sum(1, keepdim=True, dtype=torch.float64)).sum(0)
    mean = total / count
    var = (squares - count * mean**2) / max(count - 1, 1)
    return mean, var.clamp_min(1e-16).sqrt()


def colorize(gray: torch.Tensor, colors: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Grey images ``[N, H, W]`` in [0, 1] times their colours, each channel standardised: ``[N, 3, H, W]`` float32.

    ``mean``/``std`` are the per-channel statistics of the coloured training split, the same for every split.
    """
    palette = COLORS[torch.from_numpy(np.asarray(colors, dtype=np.int64))]  # [N, 3]
    out = torch.empty(len(gray), 3, *gray.shape[1:], dtype=torch.float32)
    for c in range(3):  # one channel at a time: no [N, 3, H, W] temporaries
        scale = (palette[:, c] / std[c]).to(torch.float32).view(-1, *([1] * (gray.dim() - 1)))
        out[:, c] = gray * scale
        out[:, c] -= float(mean[c] / std[c])
    return out


def _colored_bundle(gray_train: torch.Tensor, y_train: np.ndarray, ids_train: np.ndarray, gray_test: torch.Tensor,
                    y_test: np.ndarray, ids_test: np.ndarray, *, rho: float, seed: int, source: str,
                    class_names: list[str]) -> DatasetBundle:
    """Colour the grey train and test images, carve the val split out of train, standardise with train's stats."""
    train_rng, test_rng = _rngs(seed, 2)
    colors_train = draw_colors(y_train, rho, train_rng)  # drawn before the carve: val follows the train law
    colors_test = test_rng.integers(0, len(COLORS), size=len(y_test))
    keep, held = stratified_split(y_train, VAL_FRACTION)
    mean, std = _channel_stats(gray_train[keep], colors_train[keep])

    def part(gray: torch.Tensor, y: np.ndarray, ids: np.ndarray, colors: np.ndarray) -> IndexedDataset:
        return IndexedDataset(colorize(gray, colors, mean, std), torch.from_numpy(y.astype(np.int64)),
                              torch.from_numpy(ids.astype(np.int64)), num_classes=10,
                              attributes={"color": torch.from_numpy(colors.astype(np.int64))})

    return DatasetBundle(
        train=part(gray_train[keep], y_train[keep], ids_train[keep], colors_train[keep]),
        val=part(gray_train[held], y_train[held], ids_train[held], colors_train[held]),
        test=part(gray_test, y_test, ids_test, colors_test),
        source=source,
        class_names=class_names,
        counterfactual=lambda data, attribute, values: recolor(data, attribute, values, mean, std),
    )


def recolor(data: IndexedDataset, attribute: str, values: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
            ) -> torch.Tensor:
    """The coloured images of ``data`` re-rendered in the colours ``values`` (one per row): the grey image is read
    back from the channel where the current colour is brightest, then coloured and standardised again."""
    if attribute != "color":
        raise ConfigError(f"coloured images can only be re-rendered with another 'color', not {attribute!r}")
    old = COLORS[data.attributes["color"]]  # [N, 3]
    channel = old.argmax(1)
    rows = torch.arange(len(data))
    raw = data.x[rows, channel].to(torch.float64) * std[channel].view(-1, 1, 1) + mean[channel].view(-1, 1, 1)
    gray = (raw / old[rows, channel].view(-1, 1, 1)).clamp(0.0, 1.0).to(torch.float32)
    return colorize(gray, np.asarray(values, dtype=np.int64), mean, std)


def _load_colored_digits(test_fraction: float = 0.2, *, rho: float, seed: int) -> DatasetBundle:
    x, y, train_idx, test_idx = digits_images(test_fraction)  # the digits source's split: a row index is its id
    return _colored_bundle(x[train_idx], y[train_idx], train_idx, x[test_idx], y[test_idx], test_idx, rho=rho,
                           seed=seed, source="colored-digits", class_names=[str(i) for i in range(10)])


def _load_colored_fashion_mnist(directory: Path, *, rho: float, seed: int) -> DatasetBundle:
    xtr, ytr, xte, yte = read_idx_dir(directory)  # ids as the fashion-mnist source gives them: train, then test
    to_gray = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)  # noqa: E731
    n = len(ytr)
    return _colored_bundle(to_gray(xtr), ytr.astype(np.int64), np.arange(n), to_gray(xte), yte.astype(np.int64),
                           np.arange(n, n + len(yte)), rho=rho, seed=seed, source="colored-fashion-mnist",
                           class_names=FASHION_MNIST_CLASSES)


# --- biased-tabular ---------------------------------------------------------------------------------

# The label is a noisy linear function of four standard-normal core features; fixed weights, so that only the
# options change the data. Label noise 0.5 keeps the Bayes accuracy from the core features near 90%, below what
# the attribute alone gives at rho = 0.99: a shortcut worth taking.
CORE_WEIGHTS = np.array([1.0, -0.8, 0.6, 0.4])
LABEL_NOISE = 0.5
TABULAR_FEATURES = ("core0", "core1", "core2", "core3", "proxy", "noise0", "noise1")
# load_dataset's default held-out share; biased-tabular sizes its splits from n instead
_DEFAULT_TEST_FRACTION = 0.2


def _tabular_part(n: int, rho: float, proxy_noise: float, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` samples: features (``TABULAR_FEATURES`` order, unscaled), labels and the sensitive attribute, which
    equals the label with probability ``rho``."""
    core = rng.standard_normal((n, len(CORE_WEIGHTS)))
    y = (core @ CORE_WEIGHTS + LABEL_NOISE * rng.standard_normal(n) > 0).astype(np.int64)
    sensitive = np.where(rng.random(n) < rho, y, 1 - y)
    proxy = sensitive + proxy_noise * rng.standard_normal(n)  # leaks the attribute into the features
    noise = rng.standard_normal((n, 2))
    return np.column_stack([core, proxy, noise]).astype(np.float32), y, sensitive


def _load_biased_tabular(test_fraction: float = _DEFAULT_TEST_FRACTION, *, n: int, rho: float, proxy_noise: float,
                         seed: int) -> DatasetBundle:
    if test_fraction != _DEFAULT_TEST_FRACTION:
        raise ConfigError(f"biased-tabular sizes its splits from --data-option n (test n//2, val n//10), not from a "
                          f"test fraction (got {test_fraction}); drop test_fraction")
    train_rng, val_rng, test_rng = _rngs(seed, 3)
    sizes = {"train": n, "val": n // 10, "test": n // 2}
    parts = {
        "train": _tabular_part(sizes["train"], rho, proxy_noise, train_rng),
        "val": _tabular_part(sizes["val"], rho, proxy_noise, val_rng),  # the training distribution
        "test": _tabular_part(sizes["test"], 0.5, proxy_noise, test_rng),  # the attribute says nothing here
    }
    train_x = torch.from_numpy(parts["train"][0])
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-8)
    start, splits = 0, {}
    for name, (x, y, sensitive) in parts.items():  # ids: train, then val, then test
        splits[name] = IndexedDataset((torch.from_numpy(x) - mean) / std, torch.from_numpy(y),
                                      torch.arange(start, start + len(y)), num_classes=2,
                                      attributes={"sensitive": torch.from_numpy(sensitive)})
        start += len(y)
    proxy = TABULAR_FEATURES.index("proxy")

    def flip(data: IndexedDataset, attribute: str, values: torch.Tensor) -> torch.Tensor:
        """The rows of ``data`` had ``sensitive`` been ``values``: the proxy moves with it (the noise stays)."""
        if attribute != "sensitive":
            raise ConfigError(f"biased-tabular re-renders 'sensitive' only, not {attribute!r}")
        x = data.x.clone()
        x[:, proxy] += (torch.as_tensor(values) - data.attributes["sensitive"]).to(x.dtype) / std[proxy]
        return x

    return DatasetBundle(train=splits["train"], val=splits["val"], test=splits["test"], source="biased-tabular",
                         class_names=["0", "1"], counterfactual=flip)


def _rho(default: float) -> DataOption:
    return DataOption("rho", float, default, RHO_HELP, low=0.0, high=1.0, closed="right")


_SEED = DataOption("seed", int, 0, SEED_HELP, low=0)

register_source(DataSource(
    "colored-digits", "digits coloured by class with probability rho (ReBias-style bias), 3x8x8, with a val split",
    _load_colored_digits, embedded=True, options=(_rho(0.99), _SEED), attributes=("color",),
))
register_source(DataSource(
    "colored-fashion-mnist", "Fashion-MNIST coloured by class with probability rho, 3x28x28, with a val split",
    _load_colored_fashion_mnist, default_dir=FASHION_MNIST_DIR, how_to_get=FASHION_HOW, default_model="cnn",
    options=(_rho(0.99), _SEED), attributes=("color",),
))
register_source(DataSource(
    "biased-tabular", "synthetic binary task whose attribute 'sensitive' agrees with the label with probability "
    "rho in training (a proxy feature leaks it)", _load_biased_tabular, embedded=True,
    how_to_get="synthetic: generated from its options, no files",
    options=(
        DataOption("n", int, 4000, "training samples (test n//2, val n//10)", low=20),
        DataOption("rho", float, 0.9, "probability that 'sensitive' equals the label in train and val (test: 0.5)",
                   low=0.0, high=1.0),
        DataOption("proxy_noise", float, 0.5, "std of the Gaussian noise on the proxy feature (sensitive + noise)",
                   low=0.0),
        _SEED,
    ),
    attributes=("sensitive",),
))
