"""Regenerate the configuration reference of docs/training.md from the typed schema.

    python docs/config_reference.py          # rewrite the generated section
    python docs/config_reference.py --check  # exit 1 when the document is out of date

The table comes from :func:`dpda.train.config.config_reference` (the
dataclasses' types and defaults, and ``KEY_DOCS``' units and meanings);
tests/test_docs_config_reference.py fails when the document and the schema disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dpda.config import replace_generated
from dpda.train.config import config_reference

DOC = Path(__file__).resolve().parent / "training.md"
SECTION = "config reference"


def main(argv: list) -> int:
    text = DOC.read_text(encoding="utf-8")
    fresh = replace_generated(text, SECTION, config_reference())
    if "--check" in argv:
        if fresh != text:
            print(f"{DOC} is out of date: run python docs/config_reference.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
