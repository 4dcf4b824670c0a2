"""The other half of test_missing_values.py's blanked fields (the odd positions of its schema walk), in a file of
their own so that pytest-xdist spreads the renders over two workers."""
import pytest

from test_missing_values import (KINDS, _run_for, baseline_render, check_a_blank_interval,  # noqa: F401
                                 own_task_baseline_render)

REST = range(1, len(KINDS), 2)


@pytest.mark.parametrize("position", REST, ids=[f"{KINDS[p][0].__name__}.{KINDS[p][1]}" for p in REST])
def test_a_blank_interval_renders_every_format_and_says_not_measured(position, request, tmp_path):
    check_a_blank_interval(position, _run_for(KINDS[position][0], request), request, tmp_path)
