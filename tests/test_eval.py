"""`gigcx eval` on the example brand's cases (with a floor on each metric), and bad case files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_BRAND
from tests.test_cli import gigcx

# What the example brand's front line must keep reaching (README: "Measuring the bot").
FLOORS = {
    "answer_accuracy": 0.95,
    # 0.97 before the answer decision weighed evidence instead of one cosine threshold tuned
    # on this brand: 0.92 is what a model trained on four brands and CLINC150 gives it.
    "deflection": 0.9,
    "escalation_recall": 0.9,
    "route_accuracy": 0.95,
}
WRONG_ANSWER_CEILING = 0.04


def test_the_example_brand_meets_its_quality_floors(brand_dir: Path):
    result = gigcx(
        "eval",
        "--knowledge",
        str(brand_dir / "knowledge"),
        "--cases",
        str(EXAMPLE_BRAND / "cases.jsonl"),
        "--config",
        str(brand_dir / "gigcx.yaml"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    lines = (EXAMPLE_BRAND / "cases.jsonl").read_text().splitlines()
    assert report["cases"] == sum(1 for line in lines if line.strip())
    for metric, floor in FLOORS.items():
        assert report[metric] >= floor, (metric, report)
    assert report["wrong_answer_rate"] <= WRONG_ANSWER_CEILING, report
    # The brand's own index and conversation store are not touched by an evaluation.
    assert not (brand_dir / ".gigcx").exists()


def test_the_table_lists_each_failed_case(brand_dir: Path, tmp_path: Path):
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        '{"id": "ok", "messages": ["do you ship to canada?"], "expect": "answer", '
        '"sources": ["general/shipping.md"]}\n'
        '{"id": "wrong", "messages": ["do you ship to canada?"], "expect": "escalate", '
        '"route": "staff"}\n'
    )
    result = gigcx("eval", "--knowledge", str(brand_dir / "knowledge"), "--cases", str(cases))
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "1 failed" in flat and "│ wrong" in flat and "general/shipping.md" in flat
    assert "deflection" in flat and "100.0%" in flat


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"id": "a", "messages": ["hi"], "expect": "answer"',
            "invalid JSON: Expecting ',' delimiter",
        ),
        ('{"id": "a", "messages": ["hi"], "expect": "maybe"}', "expect: 'maybe' is not allowed"),
        ('{"id": "a", "expect": "escalate"}', "messages: is required"),
        ('{"id": "a", "messages": ["hi"], "expect": "answer"}', "needs `sources`"),
        (
            '{"id": "a", "messages": ["hi"], "expect": "answer", "sources": ["nope.md"]}',
            "'nope.md' is not a file in",
        ),
        ('{"id": "a", "messages": [""], "expect": "escalate"}', "every message must have text"),
        ('{"id": "a", "messages": ["hi"], "expect": "escalate", "why": 1}', "why: is not a known"),
        ('["a list"]', "expected a JSON object"),
    ],
)
def test_a_bad_case_gets_an_error_naming_the_line_and_field(
    brand_dir: Path, tmp_path: Path, line: str, message: str
):
    cases = tmp_path / "cases.jsonl"
    cases.write_text(line + "\n")
    result = gigcx("eval", "--knowledge", str(brand_dir / "knowledge"), "--cases", str(cases))
    assert result.exit_code == 2
    flat = " ".join(result.stderr.split())
    assert f"{cases}:1" in flat and message in flat


def test_a_duplicate_id_and_a_missing_file_are_reported(brand_dir: Path, tmp_path: Path):
    cases = tmp_path / "cases.jsonl"
    case = '{"id": "a", "messages": ["hi"], "expect": "escalate"}'
    cases.write_text(f"{case}\n\n{case}\n")
    result = gigcx("eval", "--knowledge", str(brand_dir / "knowledge"), "--cases", str(cases))
    assert result.exit_code == 2
    assert f"{cases}:3: id 'a' is already used on line 1" in " ".join(result.stderr.split())
    missing = gigcx(
        "eval", "--knowledge", str(brand_dir / "knowledge"), "--cases", str(tmp_path / "no.jsonl")
    )
    assert missing.exit_code == 2 and "cases file not found" in missing.stderr
