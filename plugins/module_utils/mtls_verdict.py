# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Turn expected-versus-observed checks into a PASS/FAIL verdict, a text table and JUnit XML."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import xml.etree.ElementTree as ET

CHECK_KINDS = ("reachability", "listener", "wire", "config")
CHECK_FIELDS = ("name", "kind", "source", "target", "expected", "observed", "detail")
TABLE_COLUMNS = ("MODE", "CHECK", "EXPECTED", "OBSERVED", "RESULT")
MAX_CELL = 48
MAX_NAME = 80  # check names are identifiers (a drift row names the object and the field): cut them late
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class MtlsVerdictError(ValueError):
    """Raised for a check list that does not follow the report contract."""


def _text(value):
    if isinstance(value, (list, tuple)):
        return " | ".join(_text(item) for item in value)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_one(check, index):
    if not isinstance(check, dict):
        raise MtlsVerdictError("check #%d must be a mapping, got %s" % (index, type(check).__name__))
    missing = [field for field in CHECK_FIELDS if field not in check]
    if missing:
        raise MtlsVerdictError("check #%d (%s) is missing %s; every check needs %s"
                               % (index, check.get("name", "unnamed"), ", ".join(missing), ", ".join(CHECK_FIELDS)))
    if not isinstance(check["name"], str) or not check["name"]:
        raise MtlsVerdictError("check #%d needs a non-empty string name" % index)
    if check["kind"] not in CHECK_KINDS:
        raise MtlsVerdictError("check %s has kind %r; use one of %s"
                               % (check["name"], check["kind"], ", ".join(CHECK_KINDS)))
    if isinstance(check["expected"], (list, tuple)) and not check["expected"]:
        raise MtlsVerdictError("check %s: an expected list must hold at least one acceptable value" % check["name"])


def _matches(expected, observed):
    acceptable = list(expected) if isinstance(expected, (list, tuple)) else [expected]
    return observed in acceptable or _text(observed) in [_text(item) for item in acceptable]


def judge(check):
    """A copy of one check with ``passed`` and a one-line ``reason``."""
    judged = dict(check)
    passed = _matches(check["expected"], check["observed"])
    expected = check["expected"]
    wanted = ("one of %s" % _text(expected)) if isinstance(expected, (list, tuple)) else _text(expected)
    judged["passed"] = passed
    judged["reason"] = "%s %s -> %s: expected %s, observed %s" % (
        "ok" if passed else "MISMATCH", check["source"], check["target"], wanted, _text(check["observed"]))
    return judged


def verdict(checks):
    """``{verdict, passed, failed, checks}``: PASS only when there is at least one check and none failed."""
    if not isinstance(checks, (list, tuple)):
        raise MtlsVerdictError("checks must be a list of check mappings")
    for index, check in enumerate(checks):
        _check_one(check, index)
    judged = [judge(check) for check in checks]
    failed = sum(1 for check in judged if not check["passed"])
    return {
        "verdict": "PASS" if judged and not failed else "FAIL",
        "passed": len(judged) - failed,
        "failed": failed,
        "checks": judged,
    }


def _cell(value, limit=MAX_CELL):
    text = " ".join(_text(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def render_verdict_table(mode, checks):
    """Fixed-width plain-text table with one row per check and a summary line."""
    report = verdict(checks)
    rows = [[_cell(mode), _cell(check["name"], MAX_NAME), _cell(check["expected"]), _cell(check["observed"]),
             "PASS" if check["passed"] else "FAIL"] for check in report["checks"]]
    widths = [max([len(col)] + [len(row[i]) for row in rows]) for i, col in enumerate(TABLE_COLUMNS)]

    def line(cells):
        return "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)).rstrip()

    out = [line(TABLE_COLUMNS), line(["-" * width for width in widths])]
    out += [line(row) for row in rows]
    out.append("%s: %s (%d passed, %d failed)" % (_text(mode), report["verdict"], report["passed"], report["failed"]))
    return "\n".join(out) + "\n"


def _xml_text(value):
    """Text XML 1.0 can carry: control characters from captured output are replaced."""
    return _NOT_XML.sub("?", _text(value))


def junit_xml(report):
    """One ``<testsuite>`` for the report, one ``<testcase>`` per check, ``<failure>`` for failed ones.

    ``report`` is the report shape of docs/design.md (``mode`` and ``checks``); checks without
    ``passed`` are judged here.
    """
    if not isinstance(report, dict) or "checks" not in report:
        raise MtlsVerdictError("report must be a mapping with checks (and mode)")
    checks = [check if "passed" in check else judge(check) for check in report["checks"]]
    for index, check in enumerate(checks):
        _check_one(check, index)
    mode = _xml_text(report.get("mode", "unknown"))
    failures = sum(1 for check in checks if not check["passed"])
    suite = ET.Element("testsuite", {
        "name": "meshlab.mtls %s" % mode, "tests": str(len(checks)), "failures": str(failures), "errors": "0"})
    for check in checks:
        case = ET.SubElement(suite, "testcase", {"classname": "mtls.%s.%s" % (mode.lower(), check["kind"]),
                                                 "name": _xml_text(check["name"])})
        summary = _xml_text("%s -> %s: expected %s, observed %s" % (
            _text(check["source"]), _text(check["target"]), _text(check["expected"]), _text(check["observed"])))
        detail = _xml_text(check["detail"]) if check["detail"] else ""
        if check["passed"]:
            ET.SubElement(case, "system-out").text = summary + ("\n" + detail if detail else "")
        else:
            failure = ET.SubElement(case, "failure", {"message": summary, "type": check["kind"]})
            failure.text = detail or summary
    return ET.tostring(suite, encoding="unicode")
