"""Verdicts, the text table and JUnit XML of the report contract in docs/design.md."""

import xml.etree.ElementTree as ET

import pytest

from ansible_collections.meshlab.mtls.plugins.module_utils.mtls_verdict import (
    MtlsVerdictError,
    junit_xml,
    render_verdict_table,
    verdict,
)


def check(name="outside-mesh -> details", kind="reachability", expected="failure", observed="failure", **extra):
    item = {"name": name, "kind": kind, "source": "outside-mesh", "target": "details.bookinfo:9080",
            "expected": expected, "observed": observed, "detail": "curl exit 56 (connection reset by peer)"}
    item.update(extra)
    return item


STRICT_CHECKS = [
    check(),
    check("inside-mesh -> details", expected="success", observed="success", source="inside-mesh"),
    check("productpage listener", kind="listener", expected="STRICT", observed="PERMISSIVE",
          detail="virtualInbound has a raw_buffer chain for 9080"),
    check("wire productpage -> details", kind="wire", expected=["tls", "mtls"], observed="tls"),
    check("kiali namespace", kind="config", expected="MTLS_ENABLED", observed="MTLS_ENABLED"),
]


def test_all_matching_checks_pass():
    report = verdict([check(), check("second", expected="success", observed="success")])
    assert (report["verdict"], report["passed"], report["failed"]) == ("PASS", 2, 0)
    assert all(item["passed"] for item in report["checks"])


def test_one_mismatch_fails_the_verdict_and_says_why():
    report = verdict(STRICT_CHECKS)
    assert (report["verdict"], report["passed"], report["failed"]) == ("FAIL", 4, 1)
    listener = report["checks"][2]
    assert listener["passed"] is False
    assert listener["reason"] == ("MISMATCH outside-mesh -> details.bookinfo:9080: expected STRICT, "
                                  "observed PERMISSIVE")


def test_expected_list_accepts_any_of_its_values():
    assert verdict([check(expected=["failure", "reset"], observed="reset")])["verdict"] == "PASS"
    failed = verdict([check(expected=["failure", "reset"], observed="success")])
    assert failed["verdict"] == "FAIL" and "one of failure | reset" in failed["checks"][0]["reason"]


def test_numbers_compare_with_their_text_form():
    assert verdict([check(expected=200, observed="200")])["verdict"] == "PASS"
    assert verdict([check(expected=[200, 302], observed=503)])["verdict"] == "FAIL"


def test_no_checks_is_not_a_pass():
    assert verdict([])["verdict"] == "FAIL"


def test_input_checks_are_not_modified():
    original = check()
    verdict([original])
    assert "passed" not in original


@pytest.mark.parametrize("bad, message", [
    ([check(kind="latency")], "kind 'latency'"),
    ([{k: v for k, v in check().items() if k != "observed"}], "missing observed"),
    ([check(name="")], "non-empty string name"),
    ([check(expected=[])], "at least one acceptable value"),
    (["not a mapping"], "must be a mapping"),
    ("checks", "must be a list"),
])
def test_bad_input_is_rejected(bad, message):
    with pytest.raises(MtlsVerdictError, match=message):
        verdict(bad)


def test_table_is_fixed_width_with_the_five_columns():
    table = render_verdict_table("STRICT", STRICT_CHECKS)
    lines = table.splitlines()
    assert lines[0].split() == ["MODE", "CHECK", "EXPECTED", "OBSERVED", "RESULT"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    starts = [lines[0].index(col) for col in ("CHECK", "EXPECTED", "OBSERVED", "RESULT")]
    for row in lines[2:-1]:
        assert row.startswith("STRICT")
        assert row[starts[-1]:].strip() in ("PASS", "FAIL")
        for start in starts:
            assert row[start - 2:start] == "  " and row[start] != " "  # every column starts at the same offset
    assert "productpage listener" in lines[4] and lines[4].rstrip().endswith("FAIL")
    assert lines[-1] == "STRICT: FAIL (4 passed, 1 failed)"
    assert "\x1b" not in table  # no colour codes


def test_table_shortens_long_cells_and_flattens_newlines():
    table = render_verdict_table("PERMISSIVE", [check(observed="x" * 200 + "\nsecond line")])
    row = table.splitlines()[2]
    assert "..." in row and "\n" not in row and len(row) < 140


def test_junit_xml_parses_and_has_one_case_per_check_with_failures():
    report = {"mode": "STRICT", "namespace": "bookinfo", "checks": STRICT_CHECKS}
    root = ET.fromstring(junit_xml(report))
    assert root.tag == "testsuite" and root.get("tests") == "5" and root.get("failures") == "1"
    cases = root.findall("testcase")
    assert [case.get("name") for case in cases] == [item["name"] for item in STRICT_CHECKS]
    failed = [case for case in cases if case.find("failure") is not None]
    assert len(failed) == 1 and failed[0].get("name") == "productpage listener"
    failure = failed[0].find("failure")
    assert "expected STRICT, observed PERMISSIVE" in failure.get("message")
    assert failure.text == "virtualInbound has a raw_buffer chain for 9080"
    assert cases[0].get("classname") == "mtls.strict.reachability"


def test_junit_xml_uses_passed_from_a_finished_report():
    judged = verdict([check(expected="success", observed="failure")])
    judged["mode"] = "DISABLE"
    root = ET.fromstring(junit_xml(judged))
    assert root.get("failures") == "1" and root.find("testcase/failure") is not None


def test_junit_xml_stays_valid_with_markup_and_control_characters():
    nasty = check(name='a<b & "c"', observed="<tls>\x00\x1b[31m", detail="]]> & <", expected="x")
    root = ET.fromstring(junit_xml({"mode": "STRICT", "checks": [nasty]}))
    case = root.find("testcase")
    assert case.get("name") == 'a<b & "c"'
    assert "<tls>" in case.find("failure").get("message")


def test_junit_xml_rejects_a_report_without_checks():
    with pytest.raises(MtlsVerdictError, match="checks"):
        junit_xml({"mode": "STRICT"})
