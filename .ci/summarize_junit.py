"""Sum the pytest JUnit XML reports under a directory.

    python3 .ci/summarize_junit.py [DIRECTORY]   (default: test-results)

Prints one line per report, then, as the last line, exactly
`total: N passed, N failed, N skipped` where failed counts failures and errors. Each <testcase>
element counts once: failed if it holds a <failure> or <error>, else skipped if it holds a
<skipped> (pytest also reports xfail that way), else passed. pytest writes a second <testcase> for
an error in teardown, so the sums agree with the tests/failures/errors/skipped attributes of the
reports' <testsuite> elements. A report that cannot be parsed counts as one
failure, since a crashed run must not read as a clean one. Standard library only.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def count_report(path: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) of one JUnit XML file."""
    passed = failed = skipped = 0
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            failed += 1
        elif "skipped" in tags:
            skipped += 1
        else:
            passed += 1
    # Errors outside any test case (pytest puts collection errors in test cases, others may not).
    if not any(True for _ in root.iter("testcase")):
        for suite in root.iter("testsuite"):
            failed += int(suite.get("errors", 0) or 0) + int(suite.get("failures", 0) or 0)
    return passed, failed, skipped


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0] if args else "test-results")
    reports = sorted(directory.rglob("*.xml")) if directory.is_dir() else []
    if not reports:
        print(f"no JUnit reports under {directory}/", file=sys.stderr)
    totals = [0, 0, 0]
    for report in reports:
        try:
            counts = count_report(report)
        except (ET.ParseError, OSError, ValueError) as error:
            print(f"{report}: unreadable report ({error}); counted as 1 failed", file=sys.stderr)
            counts = (0, 1, 0)
        print(f"{report}: {counts[0]} passed, {counts[1]} failed, {counts[2]} skipped")
        totals = [total + count for total, count in zip(totals, counts, strict=True)]
    sys.stdout.flush()
    print(f"total: {totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
