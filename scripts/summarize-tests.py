#!/usr/bin/env python3
"""Print 'N passed, N failed, N skipped' from one or more meson testlog.json
files (one JSON object per line), listing failures first."""
import json
import sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        print(f"cannot read {path}: {e}")
        failed += 1
        continue
    for line in lines:
        if not line.strip():
            continue
        t = json.loads(line)
        result = t.get("result", "")
        name = f"{t.get('suite', [''])[0] if t.get('suite') else ''} {t.get('name')}"
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
            out = (t.get("stdout") or "").strip().splitlines()
            reason = out[-1] if out else "no reason given"
            print(f"skipped: {name}: {reason}")
        else:
            failed += 1
            print(f"FAILED: {name} ({result})")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
