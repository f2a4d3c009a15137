"""The `gigcx knowledge` commands as a brand team uses them: summary, exit codes, JSON."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gigcx.cli import app

runner = CliRunner()


def gigcx(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_sync_prints_a_summary_and_search_finds_the_answer(brand_dir: Path) -> None:
    config = str(brand_dir / "gigcx.yaml")

    result = gigcx("knowledge", "sync", "--config", config)

    assert result.exit_code == 0, result.output
    assert "added" in result.output and "unchanged" in result.output
    assert "added x2/pairing.md" in " ".join(result.output.split())
    again = gigcx("knowledge", "sync", "--config", config)
    assert "0 chunks embedded" in again.output

    search = gigcx(
        "knowledge", "search", "--config", config, "--json", "-k", "2", "can i swim with the buds"
    )
    payload = json.loads(search.output)
    assert payload["hits"][0]["path"] == "faq/general.faq.yml"
    assert "IPX4" in payload["hits"][0]["text"]
    assert len(payload["hits"]) == 2

    table = gigcx("knowledge", "search", "--config", config, "how long is the warranty")
    assert "general/warranty.md" in table.output


def test_sync_json_reports_failures_with_path_and_line_and_exits_non_zero(brand_dir: Path) -> None:
    knowledge = brand_dir / "knowledge"
    (knowledge / "bad.md").write_text("---\ntitle: Bad\naudience: everyone\n---\nBody\n")

    result = gigcx("knowledge", "sync", "--config", str(brand_dir / "gigcx.yaml"), "--json")

    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["counts"] == {
        "added": 21,
        "changed": 0,
        "removed": 0,
        "unchanged": 0,
        "failed": 1,
    }
    assert report["failed"] == [
        {
            "path": "bad.md",
            "line": 3,
            "error": "front matter: audience: 'everyone' is not allowed; use one of: "
            "'public' or 'internal'",
        }
    ]


def test_sync_failure_is_readable_in_the_terminal(brand_dir: Path) -> None:
    (brand_dir / "knowledge" / "bad.faq.yml").write_text("- question: Q\n")
    result = gigcx("knowledge", "sync", "--config", str(brand_dir / "gigcx.yaml"))
    assert result.exit_code == 1
    flat = " ".join(result.output.split())
    assert "failed bad.faq.yml:1: entry 1: answer: is required" in flat
    assert "last good version" in flat


def test_dry_run_changes_nothing_and_folder_argument_overrides_config(
    brand_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other-knowledge"
    other.mkdir()
    (other / "gift-cards.md").write_text("# Gift cards\n\nGift cards never expire.\n")
    config = str(brand_dir / "gigcx.yaml")

    plan = gigcx("knowledge", "sync", str(other), "--config", config, "--dry-run", "--json")
    assert json.loads(plan.output)["added"] == ["gift-cards.md"]
    nothing_synced = gigcx("knowledge", "search", "--config", config, "gift cards")
    assert nothing_synced.exit_code == 2
    assert "run `gigcx knowledge sync` first" in " ".join(nothing_synced.output.split())

    gigcx("knowledge", "sync", str(other), "--config", config)
    hits = json.loads(
        gigcx("knowledge", "search", "--config", config, "--json", "gift card").output
    )["hits"]
    assert hits[0]["path"] == "gift-cards.md"


def test_search_before_any_sync_says_what_to_do(brand_dir: Path) -> None:
    result = gigcx("knowledge", "search", "--config", str(brand_dir / "gigcx.yaml"), "hello")
    assert result.exit_code == 2
    assert "run `gigcx knowledge sync` first" in " ".join(result.output.split())


def test_a_bad_config_stops_the_command_with_the_field_named(brand_dir: Path) -> None:
    config = brand_dir / "gigcx.yaml"
    config.write_text(config.read_text().replace("backend: local", "backend: gpu"))
    result = gigcx("knowledge", "sync", "--config", str(config))
    assert result.exit_code == 2
    assert "embeddings.backend: 'gpu' is not allowed" in result.output


def test_a_missing_knowledge_folder_is_named(brand_dir: Path) -> None:
    result = gigcx(
        "knowledge", "sync", str(brand_dir / "nope"), "--config", str(brand_dir / "gigcx.yaml")
    )
    assert result.exit_code == 2
    assert "knowledge folder not found" in result.output and "nope" in result.output


def test_interactive_search_answers_each_question_until_an_empty_line(brand_dir: Path) -> None:
    config = str(brand_dir / "gigcx.yaml")
    gigcx("knowledge", "sync", "--config", config)
    result = runner.invoke(
        app, ["knowledge", "search", "--config", config], input="do you ship to canada\n\n"
    )
    assert result.exit_code == 0, result.output
    assert "general/shipping.md" in result.output


def test_a_large_sync_lists_a_sample_of_files_and_counts_the_rest(brand_dir: Path) -> None:
    for number in range(10):
        (brand_dir / "knowledge" / f"extra-{number}.md").write_text(f"# Extra {number}\n\nText.\n")
    result = gigcx("knowledge", "sync", "--config", str(brand_dir / "gigcx.yaml"))
    flat = " ".join(result.output.split())
    assert result.exit_code == 0
    assert "... and 6 more added (see --json)" in flat  # 31 added, 25 listed


def test_a_front_matter_typo_never_publishes_an_internal_file(brand_dir: Path) -> None:
    config = str(brand_dir / "gigcx.yaml")
    playbook = brand_dir / "knowledge" / "internal" / "refund-playbook.md"
    # The first line is '--- ' (a trailing space), as in the attack that found the bug.
    playbook.write_text(
        "--- \ntitle: Refund playbook\naudience: internal\n---\n"
        "Staff may approve refunds up to $50 without a receipt.\n"
    )
    question = "can I get a refund without a receipt"

    assert gigcx("knowledge", "sync", "--config", config).exit_code == 0
    customer = json.loads(
        gigcx("knowledge", "search", "--config", config, "--json", question).output
    )
    assert not any("without a receipt" in hit["text"] for hit in customer["hits"])
    expert = gigcx("knowledge", "search", "--config", config, "--internal", "--json", question)
    assert json.loads(expert.output)["hits"][0]["path"] == "internal/refund-playbook.md"

    # A later edit leaves the front matter unclosed: refused by name, the last version kept.
    playbook.write_text(playbook.read_text().replace("\n---\n", "\n\n", 1).replace("$50", "$90"))
    result = gigcx("knowledge", "sync", "--config", config)
    assert result.exit_code == 1
    flat = " ".join(result.output.split())
    assert "failed internal/refund-playbook.md:1: front matter" in flat
    assert "last good version" in flat
    customer = json.loads(
        gigcx("knowledge", "search", "--config", config, "--json", question).output
    )
    assert not any("without a receipt" in hit["text"] for hit in customer["hits"])
    expert = gigcx("knowledge", "search", "--config", config, "--internal", "--json", question)
    assert "$50" in json.loads(expert.output)["hits"][0]["text"]
