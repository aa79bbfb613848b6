"""Command line: ``python -m fastconv bench|demo [options]``.

A thin argparse front end; each subcommand lives in its own module
(``bench``: :mod:`fastconv._bench`, ``demo``: :mod:`fastconv._demo`).
"""
import argparse
import sys


def build_parser():
    from fastconv import _bench

    parser = argparse.ArgumentParser(
        prog="python -m fastconv",
        description="fastconv: convolution and pooling for NumPy with PyTorch's semantics.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bench = commands.add_parser(
        "bench",
        help="time every fastconv strategy (and PyTorch, NumPy) on the yardstick layers",
        description=(
            "Time every fastconv strategy on the yardstick layers (or --shapes FILE), "
            "beside PyTorch and the plain NumPy as_strided im2col + matmul when importable. "
            "Prints a progress line per layer on stderr and a table of medians on stdout: "
            "ms, GFLOP/s (FLOPs = 2*N*K*P*Q*(C/groups)*R*S; backward counts twice) or GB/s "
            "for pooling (input + output bytes), and peer time / fastconv time with its "
            "geometric mean. Every entry is checked against fastconv's algorithm='auto' result. "
            "Exit status 1 when an entry fails or disagrees."
        ),
    )
    _bench.add_arguments(bench)
    bench.set_defaults(func=_bench.run)
    demo = commands.add_parser(
        "demo",
        help="train LeNet-5 on scikit-learn's handwritten digits with fastconv.nn",
        description=(
            "Train LeNet-5 (fastconv.nn convolutions and pooling, NumPy dense layers, "
            "SGD with momentum) on scikit-learn's 1,797 handwritten digits upsampled to 28x28, "
            "printing a line per epoch. The last line is 'test accuracy X% | N images/s' "
            "for either backend. Needs scikit-learn (pip install 'fastconv[examples]')."
        ),
    )
    from fastconv import _demo

    _demo.add_arguments(demo)
    demo.set_defaults(func=_demo.run)
    return parser


def main(argv=None):
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
