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



def test_op_table_rows_have_four_cells():
    """A `|` inside a summary (`x |> f`, `|x|`) is escaped, or it would split the row in a Markdown viewer."""
    import re

    lines = docs.render().splitlines()
    start = lines.index("| op | family | also | what it does |") + 2
    rows = lines[start:lines.index("", start)]
    assert len(rows) > 30
    for row in rows:
        assert len(re.split(r"(?<!\\)\|", row.strip())) == 6, row
