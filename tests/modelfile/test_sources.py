"""Scripting reads each source once (mlff.modelfile.sources): the same text as inspect gives, each
function read once within the block, inspect restored after it."""

import functools
import inspect

import pytest

from mlff.modelfile.sources import sources_read_once


def _decorate(fn):
    @functools.wraps(fn)
    def wrapper(*args):          # one code object shared by every function decorated here
        return fn(*args)
    return wrapper


@_decorate
def first(x):
    return x + 1


@_decorate
def second(x):
    return x * 2


class Holder:
    def method(self):
        return 3


def test_same_sources_each_read_once(monkeypatch):
    reads = []
    real = inspect.getsourcelines

    def counting(obj):
        reads.append(obj)
        return real(obj)

    monkeypatch.setattr(inspect, "getsourcelines", counting)
    expected = {obj: real(obj) for obj in (first, second, Holder, Holder.method, Holder().method)}
    with sources_read_once():
        for _ in range(3):
            for obj, (lines, line_no) in expected.items():
                assert inspect.getsourcelines(obj) == (lines, line_no), obj
            assert "x * 2" in inspect.getsource(second) and "x + 1" in inspect.getsource(first)
        # the method through the class and through an instance is one function
        assert len(reads) == 4
        inspect.getsourcelines(first)[0].append("changed by a caller")
        assert inspect.getsourcelines(first) == expected[first]
    assert inspect.getsourcelines is counting


def test_inspect_restored_after_an_error():
    real = inspect.getsourcelines
    with pytest.raises(RuntimeError):
        with sources_read_once():
            assert inspect.getsourcelines is not real
            raise RuntimeError("scripting failed")
    assert inspect.getsourcelines is real
