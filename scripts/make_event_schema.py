"""Write ``docs/events.schema.json``: the JSON Schema of the run event log (``incremental.events``).

Usage::

    .venv/bin/python scripts/make_event_schema.py           # (re)write it
    .venv/bin/python scripts/make_event_schema.py --check   # exit 1 if it is not current

``tests/test_events_schema.py`` fails while the committed file differs from what this writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from incremental.events import event_json_schema

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "docs" / "events.schema.json"


def render() -> str:
    """The file's exact text: pretty, sorted keys, a trailing newline."""
    return json.dumps(event_json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the file is current")
    args = parser.parse_args(argv)
    text = render()
    current = SCHEMA_FILE.read_text() if SCHEMA_FILE.is_file() else None
    if args.check:
        if current != text:
            print(f"{SCHEMA_FILE} is stale: run scripts/make_event_schema.py", file=sys.stderr)
            return 1
        return 0
    if current != text:
        SCHEMA_FILE.parent.mkdir(parents=True, exist_ok=True)
        SCHEMA_FILE.write_text(text)
        print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
