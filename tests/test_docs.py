"""docs/language.md is generated from the op registry and must not go stale."""

from flashc import docs
from flashc.ops import REGISTRY


def test_language_reference_is_up_to_date():
    assert docs.main(["--check"]) == 0, "run `python -m flashc.docs` and commit docs/language.md"


def test_every_op_is_in_the_reference():
    text = docs.render()
    for key, cls in REGISTRY.items():
        if cls.name == key:
            assert f"| `{cls.name}(" in text, cls.name


def test_every_op_documents_why():
    missing = [key for key, cls in REGISTRY.items() if cls.name == key and not (cls.__doc__ or "").strip()]
    assert not missing, f"ops without a docstring: {missing}"
