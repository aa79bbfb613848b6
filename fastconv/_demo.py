"""LeNet-5 on real handwritten digits, in NumPy over ``fastconv.nn``.

This is the code behind ``python -m fastconv demo`` (and
``examples/lenet_digits.py``), written to be read top to bottom:

1. the data: scikit-learn's 1,797 scanned 8x8 digits, upsampled to 28x28;
2. the few layers fastconv leaves to you (ReLU, Flatten, a dense layer), a
   softmax cross-entropy and SGD with momentum, each a few lines of NumPy;
3. LeNet-5: conv 6@5x5 pad 2 -> ReLU -> 2x2 max pool -> conv 16@5x5 -> ReLU
   -> 2x2 max pool -> 120 -> 84 -> 10, as a ``fastconv.nn.Sequential`` whose
   state_dict keys are those of the same ``torch.nn.Sequential``;
4. training: one loop for both backends, fastconv and (``--backend torch``)
   the identical network in PyTorch, started from the same weights;
5. the picture (``--plot``) and transfer learning (``--transfer``: pretrain
   on digits 0-4, keep and freeze the conv layers, train a new dense
   classifier on a few labelled 5-9s);
6. the command line.

Needs scikit-learn (the data) and, for ``--plot``, matplotlib: the
``[examples]`` extra. The last line printed is machine-readable and the same
for both backends: ``test accuracy 97.8% | 12,345 images/s``.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

import fastconv
from fastconv import nn

Array = np.ndarray
DTYPE = np.float32

# --------------------------------------------------------------------------
# 1. The data


@dataclass
class Digits:
    """Train and test images, ``(N, 1, 28, 28)`` float32, and their labels."""

    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array

    def subset(self, keep: Callable[[Array], Array]) -> "Digits":
        """The images whose labels pass ``keep`` (a vectorised predicate)."""
        tr, te = keep(self.y_train), keep(self.y_test)
        return Digits(self.x_train[tr], self.y_train[tr], self.x_test[te], self.y_test[te])


def bilinear_matrix(n_in: int, n_out: int) -> Array:
    """``(n_out, n_in)`` matrix resampling a line of ``n_in`` pixels to ``n_out``.

    Pixel centres are aligned as in ``torch.nn.functional.interpolate(...,
    align_corners=False)``: output pixel ``i`` samples input position
    ``(i + 0.5) * n_in / n_out - 0.5``, clamped to the edge pixels.
    """
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def load_digits_28(seed: int = 0, test_fraction: float = 0.2) -> Digits:
    """scikit-learn's digits, upsampled to 28x28, standardised, split 80/20.

    The split is stratified (each digit is 20% of its own images in the test
    set) and fixed by ``seed``; mean and standard deviation come from the
    training images only.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit(
            "demo: needs scikit-learn for its data set: pip install 'fastconv[examples]' "
            "(or: pip install scikit-learn)"
        ) from None
    digits = load_digits()  # shipped inside scikit-learn: no download
    images = digits.images / 16.0  # (1797, 8, 8), ink 0..16
    labels = digits.target.astype(np.int64)
    # bilinear upsampling is a matrix on each side: A @ image @ A.T
    a = bilinear_matrix(8, 28)
    big = np.einsum("ih,nhw,jw->nij", a, images, a)[:, None]  # (N, 1, 28, 28)

    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test[members[: round(test_fraction * len(members))]] = True
    mean, std = big[~test].mean(), big[~test].std()
    big = ((big - mean) / std).astype(DTYPE)
    return Digits(big[~test], labels[~test], big[test], labels[test])


# --------------------------------------------------------------------------
# 2. What fastconv leaves to you: a few layers, the loss, the optimiser
#
# They follow fastconv.nn's protocol (layer(x), layer.backward(grad),
# named_parameters(), train(), requires_grad), so nn.Sequential chains them
# with the convolutions and gives them PyTorch's state_dict keys.


class ReLU(nn.Module):
    """``max(x, 0)``; the backward lets the gradient through where x > 0."""

    def forward(self, x: Array) -> Array:
        y = np.maximum(x, 0)
        self.save_for_backward(y)
        return y

    def backward(self, grad: Array) -> Array:
        (y,) = self.take_saved()
        return grad * (y > 0)  # (np.where(y > 0, grad, 0) is ~10x slower)


class Flatten(nn.Module):
    """``(N, C, H, W)`` -> ``(N, C*H*W)``, as ``torch.nn.Flatten``."""

    def forward(self, x: Array) -> Array:
        self.save_for_backward(x.shape)
        return x.reshape(len(x), -1)

    def backward(self, grad: Array) -> Array:
        (shape,) = self.take_saved()
        return grad.reshape(shape)


class Linear(nn.Module):
    """``y = x @ weight.T + bias``, initialised as ``torch.nn.Linear``.

    Weight ``(out_features, in_features)`` and bias are uniform in
    ``+-1/sqrt(in_features)`` (PyTorch's ``kaiming_uniform_(a=sqrt(5))``).
    """

    def __init__(self, in_features: int, out_features: int,
                 rng: Optional[np.random.Generator] = None) -> None:
        super().__init__()
        gen = np.random.default_rng(rng)
        bound = 1 / np.sqrt(in_features)
        self.weight = gen.uniform(-bound, bound, (out_features, in_features)).astype(DTYPE)
        self.bias = gen.uniform(-bound, bound, out_features).astype(DTYPE)
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias = np.zeros_like(self.bias)
        self.param_names = ("weight", "bias")

    def forward(self, x: Array) -> Array:
        self.save_for_backward(x)
        return x @ self.weight.T + self.bias

    def backward(self, grad: Array) -> Array:
        (x,) = self.take_saved()
        if self.requires_grad:
            self.grad_weight += grad.T @ x
            self.grad_bias += grad.sum(axis=0)
        return grad @ self.weight

    def _extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


def softmax_cross_entropy(logits: Array, labels: Array) -> Tuple[float, Array]:
    """Mean cross-entropy of softmax(logits) and its gradient for the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)  # no overflow in exp
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(labels))
    loss = -log_p[rows, labels].mean()
    grad = np.exp(log_p)
    grad[rows, labels] -= 1
    return float(loss), grad / len(labels)


class SGD:
    """SGD with momentum, exactly as ``torch.optim.SGD(params, lr, momentum)``:
    ``v = momentum * v + grad; param -= lr * v`` (the first step sets v = grad).
    """

    def __init__(self, params: List[Tuple[Array, Array]], lr: float, momentum: float) -> None:
        self.params = params
        self.lr, self.momentum = lr, momentum
        self.velocity: List[Optional[Array]] = [None] * len(params)

    def step(self) -> None:
        for i, (param, grad) in enumerate(self.params):
            v = self.velocity[i]
            if v is None:
                v = self.velocity[i] = grad.copy()
            else:
                v *= self.momentum
                v += grad
            param -= self.lr * v

    def zero_grad(self) -> None:
        for _, grad in self.params:
            grad[...] = 0


# --------------------------------------------------------------------------
# 3. LeNet-5


def lenet5(num_classes: int = 10, seed: int = 0) -> nn.Sequential:
    """LeNet-5 for 28x28 inputs, initialised from ``seed``.

    Layer indices (and so the state_dict keys "0.weight", ..., "11.bias")
    match ``torch_lenet5``.
    """
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, rng=rng),  # 0: (N, 6, 28, 28)
        ReLU(),
        nn.MaxPool2d(2),  # 2: (N, 6, 14, 14)
        nn.Conv2d(6, 16, 5, rng=rng),  # 3: (N, 16, 10, 10)
        ReLU(),
        nn.MaxPool2d(2),  # 5: (N, 16, 5, 5)
        Flatten(),
        Linear(400, 120, rng),  # 7
        ReLU(),
        Linear(120, 84, rng),  # 9
        ReLU(),
        Linear(84, num_classes, rng),  # 11: the classifier head
    )


FEATURES = 6  # layers 0-5: conv, ReLU, pool, conv, ReLU, pool
CLASSIFIER = (7, 9, 11)  # the dense layers
HEAD = 11


def torch_lenet5(num_classes: int = 10) -> Any:
    """The identical network in PyTorch (same layers, same state_dict keys)."""
    from torch import nn as tnn

    return tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
        tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
        tnn.Linear(84, num_classes),
    )


# --------------------------------------------------------------------------
# 4. Training: the same loop over either backend
#
# A backend holds the network and does one training step (forward, loss,
# backward, update) on a batch, and predicts; the fastconv.nn model is the
# description both start from and where the trained weights end up.


class FastconvBackend:
    name = "fastconv"

    def __init__(self, model: nn.Sequential, lr: float, momentum: float) -> None:
        self.model = model
        trainable = [(p, g) for layer in model if layer.requires_grad
                     for _, p, g in layer.named_parameters()]
        self.optimizer = SGD(trainable, lr, momentum)

    def step(self, x: Array, labels: Array) -> float:
        self.model.train()
        loss, grad = softmax_cross_entropy(self.model(x), labels)
        self.optimizer.zero_grad()
        self.model.backward(grad)
        self.optimizer.step()
        return loss

    def logits(self, x: Array) -> Array:
        return np.asarray(self.model.eval()(x))

    def export(self) -> Dict[str, Array]:
        return self.model.state_dict()


class TorchBackend:
    name = "torch"

    def __init__(self, model: nn.Sequential, lr: float, momentum: float) -> None:
        try:
            import torch
        except ImportError:
            raise SystemExit("demo: --backend torch needs PyTorch, which is not installed "
                             "(pip install torch)") from None
        self.torch = torch
        num_classes = model[HEAD].weight.shape[0]
        self.model = torch_lenet5(num_classes)
        # the same initial weights as the fastconv network
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
        for i, layer in enumerate(model):
            if not getattr(layer, "requires_grad", True):
                for p in self.model[i].parameters():
                    p.requires_grad_(False)
        self.optimizer = torch.optim.SGD(
            [p for p in self.model.parameters() if p.requires_grad], lr=lr, momentum=momentum)
        self.loss = torch.nn.CrossEntropyLoss()

    def step(self, x: Array, labels: Array) -> float:
        self.model.train()
        loss = self.loss(self.model(self.torch.from_numpy(x)), self.torch.from_numpy(labels))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def logits(self, x: Array) -> Array:
        self.model.eval()
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(x)).numpy()

    def export(self) -> Dict[str, Array]:
        return {k: v.detach().numpy().copy() for k, v in self.model.state_dict().items()}


def one_blas_thread() -> Any:
    """Run NumPy's BLAS (the dense layers) on one thread, while the block lasts.

    The dense layers' matrices are tiny (64 x 400 x 120): one thread runs them
    in ~0.1 ms, while a BLAS thread team wakes, spins and competes with
    fastconv's OpenMP threads for the same cores (10x slower on a busy
    2-core machine). threadpoolctl comes with scikit-learn.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn requires it
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def make_backend(name: str, model: nn.Sequential, lr: float, momentum: float) -> Any:
    return (TorchBackend if name == "torch" else FastconvBackend)(model, lr, momentum)


def accuracy(backend: Any, x: Array, labels: Array, batch: int = 500) -> float:
    """Fraction of ``x`` classified as ``labels`` (eval mode, in chunks)."""
    right = 0
    for i in range(0, len(x), batch):
        right += int((backend.logits(x[i:i + batch]).argmax(axis=1) == labels[i:i + batch]).sum())
    return right / max(1, len(x))


@dataclass
class History:
    """Per-epoch training loss, train and test accuracy; images and seconds trained."""

    loss: List[float] = field(default_factory=list)
    train_acc: List[float] = field(default_factory=list)
    test_acc: List[float] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[Array]:
    """Indices of a shuffled epoch, ``batch_size`` at a time (the last may be short)."""
    order = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def train(backend: Any, data: Digits, epochs: int, batch_size: int, seed: int,
          log: Optional[Callable[[str], None]] = print) -> History:
    """Train ``epochs`` passes over ``data.x_train``; evaluate after each.

    Only the training steps are timed (forward, backward, update), so
    images/s compares the backends' training speed; evaluation is not in it.
    """
    rng = np.random.default_rng(seed)  # the batch order: the same for both backends
    hist = History()
    for epoch in range(1, epochs + 1):
        losses = []
        start = time.perf_counter()
        for idx in batches(len(data.x_train), batch_size, rng):
            losses.append(backend.step(data.x_train[idx], data.y_train[idx]) * len(idx))
        seconds = time.perf_counter() - start
        hist.seconds += seconds
        hist.images += len(data.x_train)
        hist.loss.append(sum(losses) / len(data.x_train))
        hist.train_acc.append(accuracy(backend, data.x_train, data.y_train))
        hist.test_acc.append(accuracy(backend, data.x_test, data.y_test))
        if log:
            log(f"epoch {epoch:{len(str(epochs))}d}/{epochs}  loss {hist.loss[-1]:.4f}  "
                f"train {100 * hist.train_acc[-1]:5.1f}%  test {100 * hist.test_acc[-1]:5.1f}%  "
                f"{len(data.x_train) / seconds:,.0f} images/s")
    return hist


def summary_line(test_accuracy: float, images_per_second: float) -> str:
    """The machine-readable last line, the same for both backends."""
    return f"test accuracy {100 * test_accuracy:.1f}% | {images_per_second:,.0f} images/s"


# --------------------------------------------------------------------------
# 5a. The picture: learned filters, feature maps, learning curves


def feature_maps(model: nn.Sequential, image: Array) -> List[Tuple[str, Array]]:
    """One image's activations after each conv (+ReLU) and pool stage."""
    stages = {1: "conv1 + ReLU", 2: "max pool 1", 4: "conv2 + ReLU", 5: "max pool 2"}
    out = []
    x = image[None]
    model.eval()
    for i, layer in enumerate(model):
        x = layer(x)
        if i in stages:
            out.append((stages[i], x[0]))
    return out


def plot(model: nn.Sequential, hist: History, data: Digits, path: str, title: str) -> None:
    """Save the first layer's filters, one test digit's feature maps and the
    learning curves to ``path`` (PNG)."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("demo: --plot needs matplotlib: pip install 'fastconv[examples]' "
                         "(or: pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 8), layout="constrained")
    fig.suptitle(title)
    subfigures: Any = fig.subfigures(1, 2, width_ratios=[2.2, 1])
    left, right = subfigures
    stages = feature_maps(model, data.x_test[0])
    rows = [("input", data.x_test[0])] + [("conv1 filters", model[0].weight[:, 0])] + stages
    axes = left.subplots(len(rows) + 2, 8)  # the 16-map stages take two rows each
    for ax in axes.ravel():
        ax.axis("off")
    r = 0
    for name, maps in rows:
        for j, m in enumerate(maps):
            ax = axes[r + j // 8, j % 8]
            ax.imshow(m, cmap="RdBu_r" if name == "conv1 filters" else "gray",
                      **({"vmin": -abs(m).max(), "vmax": abs(m).max()}
                         if name == "conv1 filters" else {}))
        axes[r, 0].set_title(name, loc="left", fontsize=9)
        r += -(-len(maps) // 8)
    ax_loss, ax_acc = right.subplots(2, 1)
    epochs = np.arange(1, len(hist.loss) + 1)
    ax_loss.plot(epochs, hist.loss)
    ax_loss.set(title="training loss", xlabel="epoch", yscale="log")
    ax_acc.plot(epochs, 100 * np.array(hist.train_acc), label="train")
    ax_acc.plot(epochs, 100 * np.array(hist.test_acc), label="test")
    ax_acc.set(title="accuracy (%)", xlabel="epoch")
    ax_acc.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------
# 5b. Transfer learning: pretrain on 0-4, fine-tune a new head on a few 5-9s


def few_per_class(labels: Array, per_class: int, rng: np.random.Generator) -> Array:
    """Indices of ``per_class`` random examples of each label."""
    return np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                           for c in np.unique(labels)])


def transfer(args: argparse.Namespace, data: Digits) -> Tuple[float, float]:
    """Return the test accuracy on digits 5-9 of (fine-tuned, from scratch)."""
    source = data.subset(lambda y: y < 5)
    target = data.subset(lambda y: y >= 5)
    target.y_train, target.y_test = target.y_train - 5, target.y_test - 5
    rng = np.random.default_rng(args.seed)
    few = few_per_class(target.y_train, args.per_class, rng)
    small = Digits(target.x_train[few], target.y_train[few], target.x_test, target.y_test)

    print(f"pretraining on digits 0-4 ({len(source.x_train)} images, {args.epochs} epochs)")
    model = lenet5(5, args.seed)
    pretrained = make_backend(args.backend, model, args.lr, args.momentum)
    train(pretrained, source, args.epochs, args.batch_size, args.seed)
    model.load_state_dict(pretrained.export())  # (a no-op for fastconv: the same arrays)

    print(f"fine-tuning on digits 5-9: {args.per_class} labelled images per class "
          f"({len(few)} images), conv layers frozen, new classifier, {args.epochs} epochs")
    # the conv layers are the feature extractor: keep and freeze them; the
    # dense layers are the classifier: replace them (measured with 5 images
    # per class, seeds 0-2: ~87%; a new 84 -> 5 head alone ~85%, and with
    # the pretrained 120 and 84 frozen too ~64%)
    fresh = lenet5(5, args.seed + 1)
    for i in CLASSIFIER:
        model[i] = fresh[i]
    model[:FEATURES].requires_grad = False  # freeze the conv layers (a view: the same layers)
    small_batch = min(args.batch_size, 20)
    tuned = make_backend(args.backend, model, args.lr, args.momentum)
    tuned_hist = train(tuned, small, args.epochs, small_batch, args.seed, log=None)

    scratch = make_backend(args.backend, lenet5(5, args.seed + 1), args.lr, args.momentum)
    scratch_hist = train(scratch, small, args.epochs, small_batch, args.seed, log=None)
    return tuned_hist.test_acc[-1], scratch_hist.test_acc[-1]


# --------------------------------------------------------------------------
# 6. The command line: python -m fastconv demo [options]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("fastconv", "torch"), default="fastconv",
                        help="train with fastconv (default) or the identical network in PyTorch")
    parser.add_argument("--epochs", type=int, default=30, help="passes over the data (default 30)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (default 0.02)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the split, the initial weights and the batch order")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for fastconv (or PyTorch); default: all cores")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="save the learned filters, feature maps and learning curves")
    parser.add_argument("--transfer", action="store_true",
                        help="pretrain on digits 0-4, train a new dense classifier on a few "
                             "5-9s with the conv layers frozen, compare with training from "
                             "scratch")
    parser.add_argument("--per-class", type=int, default=5,
                        help="labelled images per digit for --transfer (default 5)")


def run(args: argparse.Namespace) -> int:
    for name in ("epochs", "batch_size", "per_class"):
        if getattr(args, name) < 1:
            raise SystemExit(f"demo: --{name.replace('_', '-')} must be >= 1, "
                             f"got {getattr(args, name)}")
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"demo: --threads must be >= 1, got {args.threads}")
        fastconv.set_num_threads(args.threads)
    if args.backend == "torch":
        try:
            import torch
        except ImportError:
            raise SystemExit("demo: --backend torch needs PyTorch, which is not installed "
                             "(pip install torch)") from None
        if args.threads is not None:
            torch.set_num_threads(args.threads)
    data = load_digits_28(args.seed)
    with one_blas_thread() if args.backend == "fastconv" else contextlib.nullcontext():
        return _run(args, data)


def _run(args: argparse.Namespace, data: Digits) -> int:
    if args.backend == "torch":
        import torch

        threads = torch.get_num_threads()
    else:
        threads = fastconv.get_num_threads()
    print(f"LeNet-5 on scikit-learn's digits (8x8 scans upsampled to 28x28): "
          f"{len(data.x_train):,} training, {len(data.x_test):,} test images; "
          f"backend {args.backend}, {threads} thread(s), seed {args.seed}")
    if args.transfer:
        tuned, scratch = transfer(args, data)
        print(f"digits 5-9 from {args.per_class} labelled images per class: "
              f"fine-tuned {100 * tuned:.1f}% | from scratch {100 * scratch:.1f}%")
        return 0
    model = lenet5(10, args.seed)
    backend = make_backend(args.backend, model, args.lr, args.momentum)
    hist = train(backend, data, args.epochs, args.batch_size, args.seed)
    if args.plot:
        model.load_state_dict(backend.export())
        plot(model, hist, data, args.plot,
             f"LeNet-5 ({args.backend}) on scikit-learn's digits: "
             f"test accuracy {100 * hist.test_acc[-1]:.1f}%")
        print(f"saved {args.plot}")
    print(summary_line(hist.test_acc[-1], hist.images_per_second))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python examples/lenet_digits.py [options]``: the demo without the package CLI."""
    parser = argparse.ArgumentParser(prog="lenet_digits", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
