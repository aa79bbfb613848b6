"""The Examples sections of the public docstrings run and print what they show."""
import doctest

import pytest

import fastconv.conv
import fastconv.pool


@pytest.mark.parametrize("module", [fastconv.conv, fastconv.pool], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
