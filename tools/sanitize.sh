#!/usr/bin/env bash
# Run the test suite and the fuzzer on an AddressSanitizer + UBSan build.
#
#   tools/sanitize.sh                 the whole suite (tests/, fuzzer included)
#   tools/sanitize.sh --quick         the CI subset: the fuzzer and the
#                                     safety tests (a few minutes with the build)
#   tools/sanitize.sh -- ARGS...      pytest ARGS instead (paths under tests/)
#   tools/sanitize.sh --python ARGS...  python ARGS on the build, e.g.
#                                     --python tools/fuzz_atheris.py -max_total_time=600
#
# The checked build (FASTCONV_SANITIZE=1, see setup.py) is made from a copy of
# the working tree (tracked and untracked files, as git sees them) and
# installed into its own directory, so neither the source tree nor the
# installed package changes. CPython itself is not instrumented, so libasan
# is preloaded; leak detection is off (CPython's arenas and interned objects
# would all be reported: tests/test_leaks.py watches fastconv's memory
# instead). Any report aborts the process, so the exit status is nonzero on
# the first one. FASTCONV_SANITIZE_DIR keeps the build somewhere reusable
# (its compiled modules are reused while setup.py and the .pyx/.pxd/.h files
# are unchanged).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
mode=full
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) mode=quick ;;
        --) shift; pytest_args=("$@"); mode=args; break ;;
        --python) shift; pytest_args=("$@"); mode=python; break ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "sanitize.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ -n "${FASTCONV_SANITIZE_DIR:-}" ]; then
    work="$FASTCONV_SANITIZE_DIR"
else
    work="$(mktemp -d -t fastconv-sanitize.XXXXXX)"
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
src="$work/src"
site="$work/site"

# ---- build (the compiled modules are reused while their sources are unchanged)
rm -rf "$src"
mkdir -p "$src"
(cd "$root" && git ls-files -co --exclude-standard -z) \
    | (cd "$root" && xargs -0 cp --parents -t "$src")
stamp="$(cd "$src" && cat setup.py pyproject.toml fastconv/*.pyx fastconv/*.pxd fastconv/*.h \
         | sha256sum | cut -d' ' -f1)"
if [ -f "$site/.fastconv-build" ] && [ "$(cat "$site/.fastconv-build")" = "$stamp" ]; then
    cp "$src"/fastconv/*.py "$src"/fastconv/*.json "$site/fastconv/"
    echo "sanitize.sh: reusing the compiled modules in $site"
else
    rm -rf "$site"
    echo "sanitize.sh: building with -fsanitize=address,undefined into $site"
    start=$SECONDS
    # the build requirements from this environment when it has them (faster)
    isolation=()
    if "$python" -c "import Cython, numpy, setuptools" 2>/dev/null; then
        isolation=(--no-build-isolation)
    fi
    FASTCONV_SANITIZE=1 "$python" -m pip install --quiet --no-deps "${isolation[@]}" \
        --target "$site" "$src"
    echo "$stamp" > "$site/.fastconv-build"
    echo "sanitize.sh: built in $((SECONDS - start)) s"
fi

# ---- the sanitizer runtime
libasan="$(gcc -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
    echo "sanitize.sh: libasan not found (gcc -print-file-name=libasan.so)" >&2
    exit 2
fi
# libstdc++ too: ASan's __cxa_throw interceptor must find the real one when
# it starts, or the first C++ exception in an extension (matplotlib, torch)
# aborts the process
libstdcxx="$(gcc -print-file-name=libstdc++.so)"
export LD_PRELOAD="$libasan:$libstdcxx${LD_PRELOAD:+:$LD_PRELOAD}"
# abort_on_error: a report kills the process (pytest cannot swallow it);
# detect_leaks=0: see above; allocator_may_return_null: a failed huge
# malloc returns NULL (the kernels then raise MemoryError) instead of
# aborting, which is what the MemoryError tests check.
# Reports go to files (pytest captures stderr, and an aborted process never
# shows what it captured), printed below; child processes report there too.
reports="$work/reports"
rm -rf "$reports"
mkdir -p "$reports"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1:log_path=$reports/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONPATH="$site"
export FASTCONV_SANITIZED=1  # tests that cannot run under ASan (RSS, huge arrays) skip
export PYTHONFAULTHANDLER=1

cd "$work"  # the source tree's fastconv/ must not shadow the installed build
"$python" - "$site" <<'EOF'
import sys, fastconv, fastconv._conv as c
assert fastconv.__file__.startswith(sys.argv[1]), fastconv.__file__
maps = open("/proc/self/maps").read()
assert "libasan" in maps and "libubsan" in maps, "the sanitizer runtimes are not loaded"
print(f"sanitize.sh: fastconv from {fastconv.__file__}, SIMD {c.simd_variant()}")
EOF

case "$mode" in
    full) set -- "$src/tests" ;;
    quick) set -- "$src/tests/test_fuzz.py" "$src/tests/test_errors.py" \
                   "$src/tests/test_concurrency.py" "$src/tests/test_special.py" \
                   "$src/tests/test_leaks.py" ;;
    args|python)  # paths under tests/ and tools/ refer to the copy
        set --
        for a in "${pytest_args[@]}"; do
            case "$a" in tests*|tools*) set -- "$@" "$src/$a" ;; *) set -- "$@" "$a" ;; esac
        done ;;
esac
start=$SECONDS
status=0
if [ "$mode" = python ]; then
    "$python" "$@" || status=$?
else
    "$python" -m pytest -q -p no:cacheprovider --rootdir "$src" -c "$src/pyproject.toml" "$@" \
        || status=$?
fi
echo "sanitize.sh: finished in $((SECONDS - start)) s with status $status"
# errors, not the warnings of allocations refused on purpose (test_leaks.py)
found=$(grep -l -E "ERROR: AddressSanitizer|runtime error:" "$reports"/* 2>/dev/null || true)
if [ -n "$found" ]; then
    for f in $found; do
        echo "==== sanitizer report $f"
        cat "$f"
    done
    echo "sanitize.sh: $(echo "$found" | wc -l) sanitizer report(s)"
    [ "$status" -ne 0 ] || status=1
elif [ "$status" -ne 0 ]; then
    echo "sanitize.sh: no sanitizer report files, but the run failed (status $status):" \
         "a report may have gone to stderr, see the output above"
else
    echo "sanitize.sh: no sanitizer reports"
fi
exit $status
