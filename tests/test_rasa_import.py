"""`gigcx knowledge import rasa`: a brand team turns a Rasa 3 project into FAQ files, sees
what was not imported and where, and re-imports after changing the project.

The three projects are real ones (../shared/data/rasa). rasa-demo is GPL-3.0: it is only read
from there, never copied; helpdesk-assistant (Apache-2.0) is copied to tmp_path to be edited.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gigcx.cli import app
from gigcx.knowledge import rasa_import
from gigcx.knowledge.documents import ChunkingOptions, FaqEntry, parse_document
from gigcx.knowledge.rasa_import import (
    HEADER_MARK,
    ImportPlan,
    RasaImportError,
    plan_import,
    write_plan,
)

RASA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rasa"
HELPDESK = RASA / "helpdesk-assistant"
FINANCIAL = RASA / "financial-demo"
RASA_DEMO = RASA / "rasa-demo"

runner = CliRunner()


def entries_by_intent(plan: ImportPlan) -> dict[str, rasa_import.ImportedEntry]:
    return {entry.intent: entry for entries in plan.files.values() for entry in entries}


def skipped_what(plan: ImportPlan) -> dict[str, rasa_import.Skipped]:
    return {item.what: item for item in plan.skipped}


def load_folder(folder: Path) -> dict[str, list[dict]]:
    """Every FAQ file in `folder` read by gigcx's own FAQ reader, as the entries it holds."""
    loaded = {}
    for path in sorted(folder.glob("*.faq.yml")):
        document = parse_document(path.name, path.read_bytes(), ChunkingOptions())
        assert document.chunks, path
        loaded[path.name] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


def folder_state(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")}


@pytest.fixture
def helpdesk(tmp_path: Path) -> Path:
    """A copy of helpdesk-assistant that a test may change."""
    return Path(shutil.copytree(HELPDESK, tmp_path / "helpdesk-assistant"))


# ---------------------------------------------------------------- the real projects


def test_helpdesk_bot_challenge_becomes_an_entry_answered_by_utter_iamabot(tmp_path: Path) -> None:
    plan = plan_import(HELPDESK)
    entries = entries_by_intent(plan)

    bot = entries["bot_challenge"]
    assert bot.answer == "I am a bot, powered by Rasa."
    assert bot.question == "Are you a bot?"
    assert "am I talking to a bot?" in bot.alternatives
    assert bot.source.startswith("rasa:data/nlu.yml:")
    assert "response utter_iamabot (domain.yml:" in bot.source
    assert 'rule "answer bot challenge" (data/rules.yml:' in bot.source
    # One-step rules and stories only: greet is followed by two utterances, so it is left out.
    assert set(entries) == {"goodbye", "thank", "bot_challenge", "help"}
    assert list(plan.files) == ["intents.faq.yml"]

    write_plan(plan, tmp_path / "out")
    loaded = load_folder(tmp_path / "out")
    faq = {entry["tags"][0]: entry for entry in loaded["intents.faq.yml"]}
    assert faq["bot_challenge"]["answer"] == "I am a bot, powered by Rasa."


def test_helpdesk_lists_forms_custom_actions_slots_and_unanswered_intents_with_file_and_line() -> (
    None
):
    skipped = skipped_what(plan_import(HELPDESK))

    form = skipped["form open_incident_form"]
    lines = (HELPDESK / "domain.yml").read_text().splitlines()
    assert form.file == "domain.yml"
    assert lines[form.line - 1].strip() == "open_incident_form:"
    assert "forms" in form.why

    password = skipped["intent password_reset"]
    assert password.file == "data/nlu.yml"
    nlu_lines = (HELPDESK / "data/nlu.yml").read_text().splitlines()
    assert nlu_lines[password.line - 1] == "- intent: password_reset"
    assert "starts the form open_incident_form" in password.why
    assert "data/rules.yml:" in password.why

    assert "slot email" in skipped
    assert skipped["custom action action_handoff"].file == "data/handoff.yml"
    assert "needs a slot ({handoffhost})" in skipped["response utter_wouldve_handed_off"].why
    assert "multi-step" in skipped["intent greet"].why


def test_helpdesk_entity_annotations_are_stripped_and_synonyms_become_alternatives() -> None:
    plan = plan_import(HELPDESK)
    every_wording = [
        wording
        for entries in plan.files.values()
        for entry in entries
        for wording in [entry.question, *entry.alternatives]
    ]
    assert not [w for w in every_wording if "](" in w or "]{" in w]

    # open_incident is a form, so it is not imported; its wordings are still made plain.
    texts = [rasa_import._plain_text(e)[0] for e in plan_import_examples("open_incident")]
    assert "open an urgent issue" in texts


def plan_import_examples(intent: str) -> list[str]:
    project = rasa_import._read_project(HELPDESK)
    return project.intents[intent].examples


def test_synonyms_add_a_few_alternatives(helpdesk: Path) -> None:
    nlu = helpdesk / "data" / "nlu.yml"
    nlu.write_text(
        nlu.read_text()
        + "\n- intent: ask_priority\n  examples: |\n"
        + '    - what does [urgent]{"entity": "priority", "value": "high"} mean?\n'
        + "    - explain priorities\n"
    )
    rules = helpdesk / "data" / "rules.yml"
    rules.write_text(
        rules.read_text()
        + "\n  - rule: priorities\n    steps:\n    - intent: ask_priority\n"
        + "    - action: utter_priorities\n"
    )
    domain = helpdesk / "domain.yml"
    domain.write_text(
        domain.read_text().replace(
            "responses:\n",
            "responses:\n  utter_priorities:\n  - text: High means we call you back today.\n",
        )
    )

    entry = entries_by_intent(plan_import(helpdesk))["ask_priority"]

    assert entry.question == "What does urgent mean?"
    assert entry.answer == "High means we call you back today."
    synonym_wordings = [a for a in entry.alternatives if a.startswith("what does")]
    assert "what does high mean?" in synonym_wordings
    assert 1 <= len(synonym_wordings) <= rasa_import.SYNONYM_ALTERNATIVES_PER_ENTRY


def test_requests_for_a_person_and_out_of_scope_are_left_to_gigcx_escalation() -> None:
    plan = plan_import(RASA_DEMO)
    skipped = skipped_what(plan)

    assert "human_handoff" not in entries_by_intent(plan)
    handoff = skipped["intent human_handoff"]
    assert handoff.file == "data/nlu/nlu.yml" and handoff.line
    assert "keep the customer from reaching a person" in handoff.why
    # Its answer is not listed a second time as an unused response.
    assert "response utter_contact_email" not in skipped


def test_financial_demo_imports_its_one_step_answers_and_skips_its_forms(tmp_path: Path) -> None:
    plan = plan_import(FINANCIAL)
    entries = entries_by_intent(plan)
    skipped = skipped_what(plan)

    assert 3 <= plan.entry_count <= 10
    assert "check_human" in entries
    assert {"form cc_payment_form", "form transfer_money_form"} <= set(skipped)
    assert any(w.startswith("needs a slot") for w in (s.why for s in plan.skipped))

    write_plan(plan, tmp_path / "out")
    assert sum(len(v) for v in load_folder(tmp_path / "out").values()) == plan.entry_count


def test_rasa_demo_retrieval_intents_become_one_file_per_group(tmp_path: Path) -> None:
    plan = plan_import(RASA_DEMO)
    entries = entries_by_intent(plan)
    retrieval = [intent for intent in entries if "/" in intent]

    # 37 retrieval sub-intents, each with a response: 20 faq and 15 chitchat are imported; the
    # 2 out_of_scope ones are listed instead, as gigcx escalates what its knowledge lacks.
    assert len(retrieval) == 35
    assert {name: len(plan.files[name]) for name in plan.files if name != "intents.faq.yml"} == {
        "chitchat.faq.yml": 15,
        "faq.faq.yml": 20,
    }
    assert "gigcx escalates this itself" in skipped_what(plan)["intent out_of_scope/other"].why
    languages = entries["faq/languages"]
    assert languages.answer == "You can use Rasa to build assistants in any language you want!"
    assert languages.source.startswith("rasa:data/nlu/faq.yml:")
    assert "response utter_faq/languages (data/nlu/responses/responses.yml:" in languages.source
    assert len(languages.alternatives) > 5
    # Four chitchat responses have no NLU examples: listed, not imported.
    skipped = skipped_what(plan)
    assert "no NLU examples" in skipped["response utter_chitchat/telljoke"].why
    assert "lookup products" in skipped and "regex zipcode" in skipped
    # Several variations: the first is the answer, the others are kept beside it.
    assert any(entry.answer_variations for entry in entries.values())

    write_plan(plan, tmp_path / "out")
    loaded = load_folder(tmp_path / "out")
    assert set(loaded) == set(plan.files)
    for entries_in_file in loaded.values():
        for entry in entries_in_file:
            FaqEntry(**entry)  # every field is one the FAQ format knows


def test_output_files_start_with_the_generated_header(tmp_path: Path) -> None:
    write_plan(plan_import(HELPDESK), tmp_path / "out", generated_on=date(2026, 12, 5))

    text = (tmp_path / "out" / "intents.faq.yml").read_text()

    assert text.startswith(HEADER_MARK)
    header = text.split("\n- ")[0]
    assert str(HELPDESK) in header and "2026-12-05" in header
    assert "# Edit the Rasa project and re-import; local edits are overwritten." in header


def test_response_variations_buttons_conditions_and_slots(helpdesk: Path) -> None:
    domain = helpdesk / "domain.yml"
    domain.write_text(
        domain.read_text().replace(
            "  utter_iamabot:\n  - text: I am a bot, powered by Rasa.\n",
            "  utter_iamabot:\n"
            "  - text: I am a bot, {name}.\n"  # needs a slot: left out
            "  - text: I am a bot, powered by Rasa.\n"
            "    buttons:\n    - title: Talk to a person\n      payload: /human_handoff\n"
            "  - text: Beep boop, a bot.\n"
            "  - text: I am the VIP bot.\n    condition:\n    - type: slot\n"
            "      name: vip\n      value: true\n",
        )
    )
    rules = helpdesk / "data" / "rules.yml"
    rules.write_text(
        rules.read_text()
        + "\n  - rule: a picture\n    steps:\n    - intent: greet\n    - action: utter_picture\n"
    )
    domain.write_text(
        domain.read_text().replace(
            "responses:\n", "responses:\n  utter_picture:\n  - image: https://example.com/a.png\n"
        )
    )

    plan = plan_import(helpdesk)
    entry = entries_by_intent(plan)["bot_challenge"]
    why = {s.why for s in plan.skipped if s.what == "response utter_iamabot"}

    assert entry.answer == "I am a bot, powered by Rasa."
    assert entry.answer_variations == ["Beep boop, a bot."]
    assert "buttons dropped; the text was imported" in why
    assert "some variations left out: 1 needing a slot ({name}), 1 conditional" in why
    assert "greet" not in entries_by_intent(plan)
    picture = skipped_what(plan)["response utter_picture"]
    assert picture.why.startswith("has no text to quote (image)")
    assert "utter_picture cannot be imported" in skipped_what(plan)["intent greet"].why


def test_a_domain_folder_is_merged(helpdesk: Path) -> None:
    domain = helpdesk / "domain.yml"
    text = domain.read_text()
    head, responses = text.split("responses:\n", 1)
    (helpdesk / "domain").mkdir()
    (helpdesk / "domain" / "main.yml").write_text(head)
    (helpdesk / "domain" / "responses.yml").write_text("version: '3.0'\nresponses:\n" + responses)
    domain.unlink()

    plan = plan_import(helpdesk)

    bot = entries_by_intent(plan)["bot_challenge"]
    assert "(domain/responses.yml:" in bot.source
    assert skipped_what(plan)["form open_incident_form"].file == "domain/responses.yml"


# ---------------------------------------------------------------- re-import


def test_reimport_updates_in_place_and_removes_files_no_longer_produced(
    helpdesk: Path, tmp_path: Path
) -> None:
    out = tmp_path / "knowledge" / "rasa"
    (helpdesk / "data" / "nlu.yml").write_text(
        (helpdesk / "data" / "nlu.yml").read_text()
        + "\n- intent: faq/opening_hours\n  examples: |\n    - when are you open?\n"
        + "    - opening hours\n"
    )
    (helpdesk / "data" / "answers.yml").write_text(
        'version: "3.1"\nresponses:\n  utter_faq/opening_hours:\n  - text: We are open 9 to 5.\n'
    )
    first = write_plan(plan_import(helpdesk), out)
    assert sorted(first.created) == ["faq.faq.yml", "intents.faq.yml"]
    assert load_folder(out)["faq.faq.yml"][0]["answer"] == "We are open 9 to 5."

    # The FAQ goes away and the bot's answer changes.
    (helpdesk / "data" / "answers.yml").unlink()
    domain = helpdesk / "domain.yml"
    domain.write_text(domain.read_text().replace("I am a bot, powered by Rasa.", "I am a bot."))
    again = write_plan(plan_import(helpdesk), out)

    assert again.removed == ["faq.faq.yml"]
    assert again.written == ["intents.faq.yml"]
    assert sorted(p.name for p in out.iterdir()) == ["intents.faq.yml"]
    faq = {e["tags"][0]: e for e in load_folder(out)["intents.faq.yml"]}
    assert faq["bot_challenge"]["answer"] == "I am a bot."

    # Nothing changed: the file is left as it is (no churn in the brand's repo).
    before = folder_state(out)
    third = write_plan(plan_import(helpdesk), out, generated_on=date(2030, 1, 1))
    assert third.unchanged == ["intents.faq.yml"] and not third.written
    assert folder_state(out) == before


def test_hand_written_files_are_never_overwritten_or_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "intents.faq.yml"
    mine.write_text("- question: Mine?\n  answer: Yes, mine.\n")
    other = out / "extra.faq.yml"
    other.write_text("- question: Other?\n  answer: Kept.\n")
    before = folder_state(out)

    with pytest.raises(RasaImportError) as raised:
        write_plan(plan_import(HELPDESK), out)

    assert "intents.faq.yml" in str(raised.value)
    assert "not written by `gigcx knowledge import rasa`" in str(raised.value)
    assert folder_state(out) == before

    # Into a folder where only the other hand-written file lives: it stays.
    mine.unlink()
    write_plan(plan_import(HELPDESK), out)
    write_plan(plan_import(HELPDESK), out)
    assert other.read_text() == "- question: Other?\n  answer: Kept.\n"


def test_an_error_mid_way_leaves_the_out_folder_exactly_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    write_plan(plan_import(RASA_DEMO), out, generated_on=date(2026, 1, 1))
    (out / "notes.md").write_text("# Notes\n\nmine\n")
    # A changed project: every file must be rewritten, and one of them fails to move.
    plan = plan_import(RASA_DEMO)
    for entries in plan.files.values():
        entries[0] = rasa_import.ImportedEntry(
            entries[0].intent, entries[0].question, "A new answer.", source="test"
        )
    before = folder_state(out)
    real_move = rasa_import._move
    moves = []

    def failing_move(source: Path, target: Path) -> None:
        moves.append(target)
        if len(moves) == 4:
            raise OSError(28, "No space left on device", str(target))
        real_move(source, target)

    monkeypatch.setattr(rasa_import, "_move", failing_move)

    with pytest.raises(OSError):
        write_plan(plan, out)

    assert folder_state(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind


# ---------------------------------------------------------------- bad input


def test_a_folder_without_a_domain_is_not_a_rasa_project(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()

    with pytest.raises(RasaImportError, match="not a Rasa project"):
        plan_import(tmp_path)


def test_a_rasa_2_project_is_refused_with_how_to_convert(helpdesk: Path) -> None:
    domain = helpdesk / "domain.yml"
    domain.write_text(domain.read_text().replace("version: '3.0'", "version: '2.0'"))

    with pytest.raises(RasaImportError) as raised:
        plan_import(helpdesk)

    assert str(raised.value).startswith("domain.yml:1: this is a Rasa 2 file")
    assert "rasa data convert" in str(raised.value)


def test_markdown_training_data_is_refused_as_rasa_2(helpdesk: Path) -> None:
    (helpdesk / "data" / "nlu.md").write_text("## intent:greet\n- hey\n")

    with pytest.raises(RasaImportError, match=r"^data/nlu.md: Markdown training data .*Rasa 1/2"):
        plan_import(helpdesk)


def test_markdown_stories_are_refused_but_a_readme_in_data_is_not(helpdesk: Path) -> None:
    (helpdesk / "data" / "README.md").write_text("# Our data\n\n## Layout\n\nnlu.yml holds...\n")
    assert entries_by_intent(plan_import(helpdesk))["bot_challenge"]

    (helpdesk / "data" / "core").mkdir()
    (helpdesk / "data" / "core" / "stories.md").write_text(
        "## happy path\n* greet\n  - utter_greet\n"
    )
    with pytest.raises(RasaImportError, match=r"^data/core/stories.md: .*rasa data convert"):
        plan_import(helpdesk)


def test_a_project_without_data_folder_has_nothing_to_import(tmp_path: Path) -> None:
    shutil.copy(HELPDESK / "domain.yml", tmp_path / "domain.yml")

    plan = plan_import(tmp_path)

    assert plan.files == {}
    assert "form open_incident_form" in skipped_what(plan)


def test_a_yaml_error_names_the_file_and_line(helpdesk: Path) -> None:
    rules = helpdesk / "data" / "rules.yml"
    lines = rules.read_text().splitlines()
    lines[9] = "    - intent: [bot_challenge"
    rules.write_text("\n".join(lines) + "\n")

    with pytest.raises(RasaImportError) as raised:
        plan_import(helpdesk)

    assert raised.value.path == "data/rules.yml"
    assert raised.value.line is not None and 10 <= raised.value.line <= 12
    assert str(raised.value).startswith(f"data/rules.yml:{raised.value.line}: invalid YAML")


def test_wrong_types_name_the_file_and_line(helpdesk: Path) -> None:
    (helpdesk / "data" / "nlu.yml").write_text('version: "3.1"\n\nnlu:\n  intent: greet\n')

    with pytest.raises(RasaImportError) as raised:
        plan_import(helpdesk)

    assert str(raised.value).startswith("data/nlu.yml:3: `nlu:` must be a list")


# ---------------------------------------------------------------- the command


def test_cli_writes_files_and_prints_a_summary_grouped_by_why(tmp_path: Path) -> None:
    out = tmp_path / "knowledge" / "rasa"

    result = runner.invoke(app, ["knowledge", "import", "rasa", str(HELPDESK), "--out", str(out)])

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"Imported 4 FAQ entries in 1 file to {out}" in text
    assert "intents.faq.yml: 4 entries, new" in text
    assert "Forms (2)" in text
    assert "domain.yml:201 form open_incident_form" in text
    assert (out / "intents.faq.yml").exists()


def test_cli_dry_run_writes_nothing_and_json_reports_entries_and_skipped(tmp_path: Path) -> None:
    out = tmp_path / "out"

    dry = runner.invoke(
        app, ["knowledge", "import", "rasa", str(RASA_DEMO), "--out", str(out), "--dry-run"]
    )
    as_json = runner.invoke(
        app,
        ["knowledge", "import", "rasa", str(RASA_DEMO), "-o", str(out), "--dry-run", "--json"],
    )

    assert dry.exit_code == 0, dry.output
    assert "Would import 46 FAQ entries in 3 files" in " ".join(dry.output.split())
    assert "- Can rasa support any language?" in dry.output
    assert not out.exists()
    report = json.loads(as_json.output)
    assert report["dry_run"] is True
    assert {name: len(entries) for name, entries in report["files"].items()}["faq.faq.yml"] == 20
    assert report["entries"] == 46
    assert {"file", "line", "what", "why"} == set(report["skipped"][0])
    assert not out.exists()


def test_cli_bad_project_exits_2_naming_the_file_and_line(helpdesk: Path, tmp_path: Path) -> None:
    (helpdesk / "data" / "stories.yml").write_text('version: "3.1"\nstories: {}\n')
    out = tmp_path / "out"

    result = runner.invoke(app, ["knowledge", "import", "rasa", str(helpdesk), "--out", str(out)])

    assert result.exit_code == 2
    assert "data/stories.yml:2: `stories:` must be a list" in " ".join(result.output.split())
    assert not out.exists()
