"""The LeNet-5 demo (``python -m fastconv demo``): short runs that must learn.

Skipped without scikit-learn (the data); the picture needs matplotlib and
the PyTorch backend needs torch, each skipped on its own.
"""
import re
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

import fastconv  # noqa: E402
from fastconv import _demo  # noqa: E402
from fastconv.__main__ import main  # noqa: E402

LAST_LINE = re.compile(r"^test accuracy (\d{1,3}\.\d)% \| (\d{1,3}(,\d{3})*) images/s$")
EPOCH_LINE = re.compile(r"^epoch +(\d+)/(\d+)  loss (\d+\.\d{4})  train +[\d.]+%  test +[\d.]+%  "
                        r"[\d,]+ images/s$")
# a few epochs of LeNet-5 on the digits: far above chance (10%) already. One
# thread: on a busy 2-core machine a 2-thread OpenMP team waits for the core
# it lost, and the short run takes seconds instead of one.
SHORT = ["--epochs", "4", "--seed", "1", "--threads", "1"]


@pytest.fixture(autouse=True)
def restore_threads():
    """The demo's --threads sets fastconv's (and PyTorch's) thread count."""
    try:
        import torch
    except ImportError:
        torch = None
    torch_threads = torch.get_num_threads() if torch else None
    yield
    fastconv.set_num_threads(None)
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)


def run_demo(capsys, *args):
    assert main(["demo", *args]) == 0
    return capsys.readouterr().out.strip().splitlines()


def test_demo_learns_and_prints_the_last_line(capsys):
    lines = run_demo(capsys, *SHORT)
    epochs = [EPOCH_LINE.match(line) for line in lines[1:-1]]
    assert all(epochs) and len(epochs) == 4, lines
    losses = [float(m.group(3)) for m in epochs]
    assert losses[-1] < 0.5 * losses[0]
    m = LAST_LINE.match(lines[-1])
    assert m, lines[-1]
    assert float(m.group(1)) > 60  # chance is 10%
    assert int(m.group(2).replace(",", "")) > 0


def test_demo_torch_backend_trains_the_same_network(capsys):
    pytest.importorskip("torch")
    ours = run_demo(capsys, "--epochs", "1", "--threads", "1")
    theirs = run_demo(capsys, "--epochs", "1", "--threads", "1", "--backend", "torch")
    assert LAST_LINE.match(theirs[-1]), theirs[-1]
    # same initial weights and batches: the first epoch's loss agrees to float32 drift
    loss = [float(EPOCH_LINE.match(lines[1]).group(3)) for lines in (ours, theirs)]
    assert abs(loss[0] - loss[1]) < 1e-3 * loss[1], (ours, theirs)


def test_demo_torch_backend_without_torch(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(SystemExit, match="--backend torch needs PyTorch, which is not installed"):
        main(["demo", "--backend", "torch", "--epochs", "1"])


def test_demo_plot_writes_a_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "lenet.png"
    lines = run_demo(capsys, "--epochs", "1", "--threads", "1", "--plot", str(path))
    assert LAST_LINE.match(lines[-1])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    assert imread(path).shape[:2] == (800, 1200)


def test_demo_transfer(capsys):
    lines = run_demo(capsys, "--transfer", "--epochs", "3", "--per-class", "20",
                     "--threads", "1")
    m = re.match(r"^digits 5-9 from 20 labelled images per class: fine-tuned (\d+\.\d)% \| "
                 r"from scratch (\d+\.\d)%$", lines[-1])
    assert m, lines[-1]
    tuned, scratch = float(m.group(1)), float(m.group(2))
    assert tuned > 60, lines  # chance is 20%
    assert 0 <= scratch <= 100


def test_demo_transfer_torch_backend_agrees(capsys):
    """PyTorch freezes the same layers and fine-tunes from the same weights."""
    pytest.importorskip("torch")
    args = ["--transfer", "--epochs", "2", "--per-class", "10", "--threads", "1"]
    pattern = r"fine-tuned (\d+\.\d)% \| from scratch (\d+\.\d)%$"
    ours = re.search(pattern, run_demo(capsys, *args)[-1])
    theirs = re.search(pattern, run_demo(capsys, *args, "--backend", "torch")[-1])
    for i in (1, 2):
        assert abs(float(ours.group(i)) - float(theirs.group(i))) <= 2.0, (ours, theirs)


def test_demo_rejects_bad_options(capsys):
    with pytest.raises(SystemExit, match="demo: --epochs must be >= 1, got 0"):
        main(["demo", "--epochs", "0"])
    with pytest.raises(SystemExit, match="demo: --threads must be >= 1, got 0"):
        main(["demo", "--threads", "0"])


# --------------------------------------------------------------------------
# the pieces


def test_digits_data():
    data = _demo.load_digits_28(seed=3)
    assert data.x_train.shape[1:] == (1, 28, 28) and data.x_train.dtype == np.float32
    assert len(data.x_train) + len(data.x_test) == 1797
    # stratified: each digit is 20% (rounded) of its own images in the test set
    for d in range(10):
        n_test, n_train = (data.y_test == d).sum(), (data.y_train == d).sum()
        assert n_test == round(0.2 * (n_test + n_train))
    assert abs(data.x_train.mean()) < 1e-4 and abs(data.x_train.std() - 1) < 1e-4
    # the seed fixes the split
    again = _demo.load_digits_28(seed=3)
    np.testing.assert_array_equal(again.y_test, data.y_test)
    assert not np.array_equal(_demo.load_digits_28(seed=4).y_test, data.y_test)


def test_bilinear_matrix_matches_torch_interpolate(rng):
    a = _demo.bilinear_matrix(8, 28)
    np.testing.assert_allclose(a.sum(axis=1), 1)  # a constant image stays constant
    torch = pytest.importorskip("torch")
    img = rng.standard_normal((8, 8))
    ours = a @ img @ a.T
    theirs = torch.nn.functional.interpolate(torch.tensor(img)[None, None], size=(28, 28),
                                             mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-12)


def test_softmax_cross_entropy_gradient(rng, numerical_grad):
    logits = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    loss, grad = _demo.softmax_cross_entropy(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.log(p[np.arange(5), labels]).mean())
    num = numerical_grad(lambda z: _demo.softmax_cross_entropy(z, labels)[0], logits,
                         np.ones(()), h=1e-6)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


def test_linear_and_sgd_match_torch(rng):
    torch = pytest.importorskip("torch")
    ours = _demo.Linear(6, 3, np.random.default_rng(0))
    theirs = torch.nn.Linear(6, 3)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    opt = _demo.SGD([(p, g) for _, p, g in ours.named_parameters()], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        x = rng.standard_normal((4, 6)).astype(np.float32)
        gy = rng.standard_normal((4, 3)).astype(np.float32)
        tx = torch.from_numpy(x).requires_grad_()
        y = ours(x)
        ty = theirs(tx)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-6)
        opt.zero_grad()
        topt.zero_grad()
        gx = ours.backward(gy)
        ty.backward(torch.from_numpy(gy))
        np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-5, atol=1e-6)
        opt.step()
        topt.step()
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-5, atol=1e-6)


def test_lenet5_keys_match_torch():
    torch_model = pytest.importorskip("torch") and _demo.torch_lenet5()
    model = _demo.lenet5(seed=0)
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in torch_model.state_dict().items()}
    assert ours == theirs
