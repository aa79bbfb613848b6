"""``python -m fastconv bench`` (run in-process on tiny layers) and its NumPy baseline.

No timing is asserted: the runs use one sample per entry, and the tests check
that the output is complete and well-formed, that wrong answers are caught, and
that options and bad input behave.
"""
import json
import math
import pathlib
import sys
import zlib

import numpy as np
import pytest

import fastconv
from fastconv import _bench, reference
from fastconv.__main__ import main

TINY = {
    "conv": [
        {"name": "t-3x3-g2", "N": 2, "C": 4, "H": 9, "W": 7, "K": 6, "R": 3, "S": 3,
         "stride": 1, "pad": 1, "groups": 2},
        {"name": "t-1x1-s2", "N": 1, "C": 3, "H": 8, "W": 8, "K": 5, "R": 1, "S": 1,
         "stride": 2, "pad": 0, "groups": 1},
    ],
    "pool": [
        {"name": "t-max3s2", "N": 2, "C": 3, "H": 7, "W": 7, "k": 3, "stride": 2, "pad": 1,
         "kind": "max"},
        {"name": "t-avg2", "N": 2, "C": 3, "H": 6, "W": 6, "k": 2, "stride": 2, "pad": 0,
         "kind": "avg"},
    ],
}
CONV_NAMES = [layer["name"] for layer in TINY["conv"]]
POOL_NAMES = [layer["name"] for layer in TINY["pool"]]
# One sample per entry, a token GEMM, one thread: fast and deterministic.
FAST = ["--repeat", "1", "--min-time", "0", "--gemm-size", "32", "--threads", "1"]
HAVE_TORCH = _bench.import_torch() is not None


@pytest.fixture
def shapes_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def run_bench(capsys, *args):
    status = main(["bench", *args])
    out, err = capsys.readouterr()
    return status, out, err


def parse_tables(out):
    """{section title: [row tokens, ...]} from the printed tables."""
    tables, title = {}, None
    names = set(CONV_NAMES + POOL_NAMES)
    for line in out.splitlines():
        if line.startswith("== "):
            title = line[3:].rsplit(",", 1)[0]
            tables[title] = []
        elif title is not None and line.split() and line.split()[0] in names:
            tables[title].append(line.split())
    return tables


def test_bench_lists_every_layer_with_sane_numbers(shapes_file, tmp_path, capsys):
    threads_before = fastconv.get_num_threads()
    json_path = tmp_path / "results.json"
    status, out, err = run_bench(
        capsys, "--shapes", shapes_file, "--backward", "--json", str(json_path), *FAST
    )
    assert status == 0, out + err
    assert fastconv.get_num_threads() == threads_before  # the bench restores it

    header = [line for line in out.splitlines() if line.startswith("#")]
    assert header[0].startswith("# fastconv") and "float32" in header[0] and "1 thread" in header[0]
    assert any(line.startswith("# CPU: ") for line in header)
    assert any(f"numpy {np.__version__}" in line for line in header)

    # a progress line per layer and direction, on stderr
    for name in CONV_NAMES:
        assert f"conv2d forward {name} (" in err
        assert f"conv2d_backward {name} (" in err
    for name in POOL_NAMES:
        assert f"pooling forward {name} (" in err
        assert f"pooling backward {name} (" in err

    tables = parse_tables(out)
    peers_fwd = (["torch"] if HAVE_TORCH else []) + ["numpy"]
    peers_bwd = ["torch"] if HAVE_TORCH else []
    expected_impls = {
        "conv2d forward": {
            "t-3x3-g2": ["direct", "im2col", "winograd", "auto"] + peers_fwd,
            "t-1x1-s2": ["direct", "im2col", "1x1", "auto"] + peers_fwd,
        },
        "conv2d_backward (grad input + grad weight + grad bias)": {
            "t-3x3-g2": ["direct", "im2col", "winograd", "auto"] + peers_bwd,
            "t-1x1-s2": ["direct", "im2col", "1x1", "auto"] + peers_bwd,
        },
        "pooling forward": {name: ["fastconv"] + peers_bwd for name in POOL_NAMES},
        "pooling backward": {name: ["fastconv"] + peers_bwd for name in POOL_NAMES},
    }
    assert set(tables) == set(expected_impls)
    for title, layers in expected_impls.items():
        rows = tables[title]
        assert [(r[0], r[1]) for r in rows] == [
            (name, impl) for name, impls in layers.items() for impl in impls
        ]
        for row in rows:
            ms, rate = float(row[2]), float(row[3])
            assert ms > 0 and math.isfinite(ms) and rate > 0 and math.isfinite(rate), row
            assert row[-1] in ("ok", "ref"), row
            for cell in row[4:-1]:  # %GEMM and the ratios to each peer
                assert float(cell.rstrip("%x")) >= 0, row

    # one geometric mean per peer and section
    if HAVE_TORCH:
        assert out.count("geometric mean torch / fastconv") == 4
    assert out.count("geometric mean numpy / fastconv(auto)") == 1

    data = json.loads(json_path.read_text())
    assert data["environment"]["threads"] == 1
    results = data["results"]
    assert {(r["section"], r["layer"]) for r in results} == {
        (s, n) for s in ("conv2d", "conv2d_backward") for n in CONV_NAMES
    } | {(s, n) for s in ("pool", "pool_backward") for n in POOL_NAMES}
    for r in results:
        assert len(r["times_s"]) >= 1 and r["median_s"] > 0
        assert ("gflops" in r) == r["section"].startswith("conv2d")
        # the GEMM yardstick timed beside each convolution layer
        assert ("gemm_gflops" in r) == r["section"].startswith("conv2d")
        assert r.get("gemm_gflops", 1) > 0
        assert ("gbps" in r) == r["section"].startswith("pool")
    fwd = {r["layer"]: r for r in results if r["section"] == "conv2d" and r["impl"] == "auto"}
    # %GEMM is of the rate timed beside the layer, not of the header's
    for row in tables["conv2d forward"]:
        if row[1] == "auto":
            r = fwd[row[0]]
            assert float(row[4].rstrip("%")) == pytest.approx(
                100 * r["gflops"] / r["gemm_gflops"], rel=0.06, abs=0.06
            ), row
    # FLOPs = 2*N*K*P*Q*(C/groups)*R*S: t-3x3-g2 keeps 9x7, t-1x1-s2 gives 4x4
    assert fwd["t-3x3-g2"]["flops"] == 2 * 2 * 6 * 9 * 7 * 2 * 3 * 3
    assert fwd["t-1x1-s2"]["flops"] == 2 * 1 * 5 * 4 * 4 * 3
    bwd = [r for r in results if r["section"] == "conv2d_backward" and r["impl"] == "auto"]
    assert {r["layer"]: r["flops"] for r in bwd} == {n: 2 * fwd[n]["flops"] for n in CONV_NAMES}
    pool = {r["layer"]: r for r in results if r["section"] == "pool" and r["impl"] == "fastconv"}
    assert pool["t-max3s2"]["bytes"] == (2 * 3 * 7 * 7 + 2 * 3 * 4 * 4) * 4


def test_bench_float64_layers_filter_and_no_peers(shapes_file, capsys):
    status, out, err = run_bench(
        capsys, "--shapes", shapes_file, "--dtype", "float64", "--layers", "t-1x1-s2,t-avg2",
        "--compare", "none", *FAST,
    )
    assert status == 0, out + err
    assert "float64" in out.splitlines()[0]
    tables = parse_tables(out)
    assert [r[:2] for r in tables["conv2d forward"]] == [
        ["t-1x1-s2", impl] for impl in ("direct", "im2col", "1x1", "auto")
    ]
    assert [r[:2] for r in tables["pooling forward"]] == [["t-avg2", "fastconv"]]
    assert "t-3x3-g2" not in out and "t-max3s2" not in out
    assert "vs torch" not in out and "vs numpy" not in out and "geometric mean" not in out


def test_bench_reports_a_wrong_strategy(shapes_file, capsys, monkeypatch):
    conv2d = fastconv.conv2d

    def broken(*args, algorithm="auto", **kwargs):
        out = conv2d(*args, algorithm=algorithm, **kwargs)
        return out + 1 if algorithm == "im2col" else out

    monkeypatch.setattr(fastconv, "conv2d", broken)
    status, out, err = run_bench(
        capsys, "--shapes", shapes_file, "--layers", "t-3x3-g2", "--compare", "numpy", *FAST
    )
    assert status == 1
    row = next(r for r in parse_tables(out)["conv2d forward"] if r[1] == "im2col")
    assert row[-3:] == ["MISMATCH", "vs", "auto"]
    assert "PROBLEMS" in out
    assert "conv2d t-3x3-g2 im2col: max |diff| vs auto = 1 " in out
    assert "im2col" in err and "(MISMATCH)" in err


def test_bench_without_torch(shapes_file, capsys, monkeypatch):
    monkeypatch.setattr(_bench, "import_torch", lambda: None)
    status, out, err = run_bench(
        capsys, "--shapes", shapes_file, "--layers", "t-avg2", "--compare", "torch,numpy", *FAST
    )
    assert status == 0, out + err
    assert "torch is not importable" in err
    assert "torch not used" in out
    assert [r[:2] for r in parse_tables(out)["pooling forward"]] == [["t-avg2", "fastconv"]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layers", "nope"], "--layers must name layers of the shapes file, got nope"),
        (["--compare", "torch,tensorflow"], "--compare must list peers among torch, numpy"),
    ],
)
def test_bench_bad_options(shapes_file, capsys, args, message):
    status, out, err = run_bench(capsys, "--shapes", shapes_file, *args, *FAST)
    assert status == 2
    assert message in err


CONV = {"name": "x", "N": 1, "C": 4, "H": 4, "W": 4, "K": 2, "R": 3, "S": 3}
POOL = {"name": "p", "N": 1, "C": 1, "H": 4, "W": 4, "k": 2, "kind": "max"}


@pytest.mark.parametrize(
    "content, message",
    [
        ({"conv": [{"name": "x", "N": 1, "C": 1, "H": 4, "W": 4}]}, "conv layer 'x' lacks K, R, S"),
        ({"conv": [{**CONV, "stride": 0}]}, "conv layer 'x': stride must be an int >= 1, got 0"),
        ({"conv": [{**CONV, "pad": 1.5}]}, "conv layer 'x': pad must be an int >= 0, got 1.5"),
        ({"conv": [{**CONV, "groups": 3}]}, "groups must divide C and K, got groups=3, C=4, K=2"),
        ({"pool": [{**POOL, "kind": "min"}]}, "kind must be 'max' or 'avg', got 'min'"),
        ({"pool": [{**POOL, "kind": "avg", "dilation": 2}]}, "avg pooling has no dilation"),
        ({"pool": [POOL, POOL]}, "layer name 'p' appears twice"),
        ({"conv": [], "linear": []}, 'must hold an object with "conv" and/or "pool" lists'),
        ("{not json", "is not valid JSON"),
    ],
)
def test_bench_bad_shapes_file(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    status, out, err = run_bench(capsys, "--shapes", str(path), *FAST)
    assert status == 2
    assert message in err


def test_bench_missing_shapes_file(tmp_path, capsys):
    status, out, err = run_bench(capsys, "--shapes", str(tmp_path / "missing.json"), *FAST)
    assert status == 2 and "missing.json" in err


def test_bench_argument_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--threads", "0"])
    assert exc.value.code == 2
    assert "--threads: must be an int >= 1, got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])  # a subcommand is required


def test_plot_needs_matplotlib(shapes_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    status, out, err = run_bench(
        capsys, "--shapes", shapes_file, "--plot", str(tmp_path / "p.png"), *FAST
    )
    assert status == 2 and "--plot needs matplotlib" in err


def test_plot(shapes_file, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "p.png"
    status, out, err = run_bench(
        capsys, "--shapes", shapes_file, "--compare", "numpy", "--plot", str(path), *FAST
    )
    assert status == 0, out + err
    assert path.stat().st_size > 0


def test_bundled_shapes_are_the_yardstick():
    shapes = _bench.load_shapes()
    assert [layer["name"] for layer in shapes["conv"]] == [
        "lenet-c1", "lenet-c2", "resnet-stem", "res-3x3-64", "res-1x1-256", "res-3x3-256",
        "3x3-s2-128", "vgg-3x3-64", "1x1-s2-512", "dw-3x3-128",
    ]
    assert [layer["name"] for layer in shapes["pool"]] == [
        "lenet-max2", "res-max3s2", "avg2-256", "gap-2048",
    ]
    assert all(layer["dilation"] == 1 for layer in shapes["conv"] + shapes["pool"])


@pytest.mark.parametrize("name", ["off_yardstick.json", "more_layers.json"])
def test_the_other_layer_lists_load_and_run(name):
    """benchmarks/'s other lists: each loads, its names are distinct, and
    every layer is one fastconv runs (explain answers for it, both ways)."""
    shapes = _bench.load_shapes(str(pathlib.Path(__file__).parent.parent / "benchmarks" / name))
    names = [layer["name"] for layer in shapes["conv"] + shapes["pool"]]
    assert len(names) == len(set(names)) and shapes["conv"]
    for c in shapes["conv"]:
        for backward in (False, True):
            fastconv.explain((c["N"], c["C"], c["H"], c["W"]),
                             (c["K"], c["C"] // c["groups"], c["R"], c["S"]),
                             c["stride"], c["pad"], c["dilation"], c["groups"],
                             backward=backward)


# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
BASELINE_CASES = [
    (2, 3, 9, 7, 4, 3, 3, 1, 1, 1, 1),
    (1, 4, 10, 11, 6, 3, 2, (2, 1), (0, 2), 1, 2),
    (3, 6, 8, 8, 12, 3, 3, 1, 1, 1, 6),  # depthwise, channel multiplier 2
    (1, 2, 12, 9, 3, 3, 3, 2, 2, (2, 3), 1),
    (2, 5, 5, 5, 7, 1, 1, 2, 0, 1, 1),
    (1, 1, 6, 6, 2, 5, 5, 1, 0, 1, 1),  # 2x2 output from a 5x5 kernel
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", BASELINE_CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_numpy_baseline_matches_reference(case, dtype, with_bias):
    n, c, h, w, k, r, s, stride, padding, dilation, groups = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((k, c // groups, r, s)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype) if with_bias else None
    got = _bench.numpy_conv2d(x, weight, bias, stride, padding, dilation, groups)
    want = reference.conv2d(x, weight, bias, stride, padding, dilation, groups)
    assert got.dtype == want.dtype == dtype
    assert got.shape == want.shape
    assert got.flags.c_contiguous
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


def test_bench_header_warns_about_openblas_overrides(shapes_file, capsys, monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "262144")
    status, out, err = run_bench(
        capsys, "--shapes", shapes_file, "--layers", "t-avg2", "--compare", "none", *FAST
    )
    assert status == 0, out + err
    warning = next(line for line in out.splitlines() if "OPENBLAS_CORETYPE" in line)
    assert warning.startswith("# WARNING: OPENBLAS_CORETYPE=Haswell, OPENBLAS_L2_SIZE=262144")
    if any(p.get("user_api") == "blas" for p in _bench.environment(1)["threadpools"]):
        assert any(line.startswith("# BLAS: ") and "kernel " in line for line in out.splitlines())
