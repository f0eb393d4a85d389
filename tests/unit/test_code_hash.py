"""The method code hash ignores prose: a docstring or comment edit re-runs no cell; a code edit does."""

import importlib
import sys

from benchmark.unlearners.base import code_fingerprint

METHOD = '''"""A method. {doc}"""
from benchmark.unlearners.base import Unlearner


class Thing(Unlearner):
    """Its docstring. {doc}"""

    params = {{"lr": [0.1]}}

    def unlearn(self, model, request, ctx):  # a comment {note}
        """Apply it. {doc}"""
        return model{code}
'''


def _hash_of(tmp_path, name, doc, code="", note=""):
    (tmp_path / f"{name}.py").write_text(METHOD.format(doc=doc, code=code, note=note))
    sys.path.insert(0, str(tmp_path))
    try:
        sys.modules.pop(name, None)
        importlib.invalidate_caches()
        module = importlib.import_module(name)
        return module.Thing.code_hash()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_docstring_and_comment_edits_keep_the_hash(tmp_path):
    a = _hash_of(tmp_path, "m_hash_a", "first words")
    b = _hash_of(tmp_path, "m_hash_a", "other words, measured 0.97\n\n    with more lines", note="edited")
    assert a == b


def test_code_edits_change_the_hash(tmp_path):
    a = _hash_of(tmp_path, "m_hash_b", "doc")
    b = _hash_of(tmp_path, "m_hash_b", "doc", code=".float()")
    assert a != b


def test_fingerprint_keeps_string_constants_that_are_not_docstrings():
    one = code_fingerprint(b'def f():\n    x = "a"\n    return x\n')
    two = code_fingerprint(b'def f():\n    x = "b"\n    return x\n')
    assert one != two
    assert code_fingerprint(b'def f():\n    "doc"\n') == code_fingerprint(b"def f():\n    pass\n")


def test_builtin_hash_is_stable_across_calls():
    from benchmark.unlearners.base import get_unlearner

    cls = get_unlearner("finetune")
    assert cls.code_hash() == cls.code_hash() and len(cls.code_hash()) == 16
