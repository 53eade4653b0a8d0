"""Bounce-reading benchmark (issue 17), scored on sisimai's public corpus. One command:

    scripts/bench bounces --corpus PATH/set-of-emails --expected PATH/p5-sisimai/t

Nothing is fetched and nothing of the corpus is kept in this repository: give it a
checkout of https://github.com/sisimai/set-of-emails (the messages, `maildir/bsd`)
and of https://github.com/sisimai/p5-sisimai (its test suite, `t/*.t`, holds the
status sisimai reads from each message; they are read at run time).

Scored per message that sisimai's tests name:
- *recognised*: a message sisimai reads as a failed delivery (status 4.x.x or 5.x.x,
  or a failure reason without a code) gives at least one bounce or delay;
- *class right*: recognised, and the classes found (hard for 5.x.x, soft for 4.x.x;
  a delay counts as soft) are those of sisimai's statuses;
- every abuse feedback report is a complaint;
- no auto-reply or other non-bounce (sisimai: vacation, feedback, delivered) is a bounce.

It prints the figures for the RFC 3464 + flufl.bounce reader alone, then for msgrun's.
`--list` prints every message scored wrong.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.bounces import OutcomeType, ReportKind, classify
from core.bounces.classify import Detector
from core.bounces.nonstandard import detect_library_only

NOT_FAILURES = {"delivered", "feedback", "vacation"}
_ENGINE = re.compile(r"my \$enginename\s*=\s*'([^']+)'")
_INDEX = re.compile(r"^\s*'(\d+)'\s*=>")
_ENTRY = re.compile(
    r"\[\s*'([^']*)'\s*,\s*'([^']*)'\s*,\s*'([^']*)'\s*,\s*(\d+)(?:\s*,\s*'([^']*)')?\s*\]"
)


@dataclass
class Expected:
    path: Path
    entries: list[tuple[str, str, str]] = field(default_factory=list)  # status, reason, fbtype

    @property
    def failure(self) -> bool:
        return any(s[:1] in ("4", "5") or r not in NOT_FAILURES for s, r, _ in self.entries)

    @property
    def classes(self) -> set[str]:
        return {
            "hard" if s[0] == "5" else "soft" for s, _r, _f in self.entries if s[:1] in ("4", "5")
        }

    @property
    def abuse(self) -> bool:
        return any(r == "feedback" and f in ("abuse", "fraud") for _s, r, f in self.entries)

    @property
    def non_bounce(self) -> bool:
        return not self.failure


def read_expectations(tests: Path, corpus: Path) -> Iterator[Expected]:
    """Each sample sisimai's tests name, with the statuses they expect of it."""
    maildir = corpus / "maildir" / "bsd" if (corpus / "maildir").is_dir() else corpus
    for test in sorted(tests.glob("*.t")):
        text = test.read_text(encoding="utf-8", errors="replace")
        engine = _ENGINE.search(text)
        if not engine or "$isexpected" not in text:
            continue
        name = engine.group(1)
        if name in ("ARF", "RFC3464", "RFC3834"):
            prefix = ""
        else:
            prefix = "rhost-" if "-rhost-" in test.name else "lhost-"
        body = text.split("$isexpected", 1)[1].split("};", 1)[0]
        current: Expected | None = None
        for line in body.splitlines():
            m = _INDEX.match(line)
            if m:
                path = maildir / f"{prefix}{name.lower()}-{int(m.group(1)):02d}.eml"
                current = Expected(path)
                if path.is_file():
                    yield current
            if current is not None:
                for status, _code, reason, _hard, ftype in _ENTRY.findall(line):
                    current.entries.append((status, reason, ftype))


@dataclass
class Score:
    failures: int = 0
    recognised: int = 0
    class_right: int = 0
    abuse: int = 0
    complaints: int = 0
    non_bounces: int = 0
    wrongly_bounced: int = 0
    wrong: list[str] = field(default_factory=list)

    def line(self, title: str) -> str:
        def pct(n: int) -> float:
            return 100.0 * n / self.failures if self.failures else 0.0

        return (
            f"{title}: {self.failures} failed deliveries, recognised {self.recognised} "
            f"({pct(self.recognised):.1f} %), class right {self.class_right} "
            f"({pct(self.class_right):.1f} %); abuse reports as complaints "
            f"{self.complaints}/{self.abuse}; non-bounces read as bounces "
            f"{self.wrongly_bounced}/{self.non_bounces}"
        )


def score(samples: list[Expected], detector: Detector | None) -> Score:
    result = Score()
    for sample in samples:
        report = classify(sample.path.read_bytes(), detector=detector)
        found = [o for o in report.outcomes if o.type in (OutcomeType.BOUNCE, OutcomeType.DELAY)]
        classes = {o.bounce_class or "soft" for o in found}
        name = sample.path.name
        if sample.failure:
            result.failures += 1
            if found:
                result.recognised += 1
                if not sample.classes or classes == sample.classes:
                    result.class_right += 1
                else:
                    result.wrong.append(
                        f"{name}: class {sorted(classes)} expected {sorted(sample.classes)}"
                    )
            else:
                result.wrong.append(f"{name}: not recognised ({report.kind}: {report.why})")
        if sample.abuse:
            result.abuse += 1
            if report.kind is ReportKind.COMPLAINT:
                result.complaints += 1
            else:
                result.wrong.append(f"{name}: abuse report read as {report.kind}")
        if sample.non_bounce:
            result.non_bounces += 1
            if any(o.type is OutcomeType.BOUNCE for o in report.outcomes):
                result.wrongly_bounced += 1
                result.wrong.append(f"{name}: not a failure, read as a bounce")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench bounces",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        required=True,
        help="a checkout of sisimai/set-of-emails (or its maildir/bsd)",
    )
    parser.add_argument(
        "--expected",
        type=Path,
        required=True,
        help="the t/ folder of a checkout of sisimai/p5-sisimai",
    )
    parser.add_argument("--list", action="store_true", help="print every message scored wrong")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        parser.error(f"--corpus {args.corpus}: no such folder")
    if not args.expected.is_dir():
        parser.error(f"--expected {args.expected}: no such folder")
    samples = list(read_expectations(args.expected, args.corpus))
    if not samples:
        parser.error("no sample of --corpus is named by a test in --expected")
    print(f"{len(samples)} messages of the corpus named by sisimai's tests")
    baseline = score(samples, detect_library_only)
    print(baseline.line("RFC 3464 + flufl.bounce alone"))
    ours = score(samples, None)
    print(ours.line("msgrun"))
    if args.list:
        for line in ours.wrong:
            print("  " + line)
    goal = (
        ours.recognised >= 0.9 * ours.failures
        and ours.class_right >= 0.85 * ours.failures
        and ours.complaints == ours.abuse
        and ours.wrongly_bounced == 0
    )
    print(
        "goal (>= 90 % recognised, >= 85 % class right, every abuse a complaint, "
        f"no non-bounce a bounce): {'met' if goal else 'NOT met'}"
    )
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
