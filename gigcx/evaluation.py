"""`gigcx eval`: run question/expectation cases through the front line and measure it.

Cases are JSON Lines (see README): the customer's turns, whether the bot should answer or
escalate, the knowledge files that make an answer right, and optionally the route. Each case
runs in a conversation of its own through `FrontLine.handle_customer_message`, the code path
the chat API uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gigcx.app import GigCX
from gigcx.bot.decision import Decision
from gigcx.validation import field_problems, read_user_file

METRICS = (
    "answer_accuracy",
    "wrong_answer_rate",
    "deflection",
    "escalation_recall",
    "route_accuracy",
    "clarify_accuracy",
    "recall_at_1",
    "recall_at_5",
)


class CaseFileError(Exception):
    """The cases file cannot be used; the message names the file, line and field."""


class ContextTurn(BaseModel):
    """An earlier turn of the conversation, seeded into its history and not judged."""

    model_config = ConfigDict(extra="forbid")

    author: Literal["customer", "agent", "bot"]
    text: str = Field(min_length=1)


class EvalCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    messages: list[str] = Field(min_length=1)
    expect: Literal["answer", "escalate", "clarify"]
    sources: list[str] = Field(default_factory=list)
    route: Literal["expert", "staff"] | None = None
    context: list[ContextTurn] = Field(default_factory=list)
    kind: str | None = Field(None, description="Free label for breakdowns, e.g. near-miss.")

    @field_validator("messages")
    @classmethod
    def _no_empty_turns(cls, value: list[str]) -> list[str]:
        if any(not text.strip() for text in value):
            raise ValueError("every message must have text")
        return value

    @model_validator(mode="after")
    def _answers_name_sources(self) -> EvalCase:
        if self.expect == "answer" and not self.sources:
            raise ValueError("a case expecting an answer needs `sources` (knowledge file paths)")
        if self.expect == "answer" and self.route is not None:
            raise ValueError("`route` only applies to cases expecting an escalation")
        return self


def read_cases(path: Path, knowledge_dir: Path | None = None) -> list[EvalCase]:
    """Every case in `path`; raises CaseFileError listing each bad line (nothing runs then)."""
    lines = read_user_file(path, "cases file", CaseFileError).splitlines()
    cases: list[EvalCase] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"{where}: invalid JSON: {error.msg} (column {error.colno})")
            continue
        if not isinstance(data, dict):
            problems.append(f"{where}: expected a JSON object, got {type(data).__name__}")
            continue
        try:
            case = EvalCase.model_validate(data)
        except ValidationError as error:
            found = field_problems(error, known_fields=EvalCase.model_fields)
            problems.extend(f"{where}: {problem}" for problem in found)
            continue
        if case.id in seen:
            problems.append(f"{where}: id {case.id!r} is already used on line {seen[case.id]}")
            continue
        seen[case.id] = number
        if knowledge_dir is not None:
            for source in case.sources:
                if not (knowledge_dir / source).is_file():
                    problems.append(
                        f"{where}: sources: {source!r} is not a file in {knowledge_dir}"
                    )
        cases.append(case)
    if problems:
        raise CaseFileError("\n".join(problems))
    if not cases:
        raise CaseFileError(f"{path}: no cases in the file")
    return cases


@dataclass(frozen=True)
class CaseResult:
    case: EvalCase
    action: str
    reason: str | None
    route: str | None
    cited: tuple[str, ...]
    retrieved: tuple[str, ...] = ()  # files of the passages the bot found, best first
    decision: Decision | None = field(default=None, repr=False, compare=False)

    @property
    def found_at(self) -> int | None:
        """Rank (1-based) of the first right file among the retrieved ones."""
        for rank, path in enumerate(self.retrieved, start=1):
            if path in self.case.sources:
                return rank
        return None

    @property
    def category(self) -> str:
        """What the case is, for the breakdown: answer, staff, expert, clarify, or its kind."""
        if self.case.kind:
            return self.case.kind
        if self.case.expect == "escalate":
            return f"escalate:{self.case.route or 'any'}"
        return self.case.expect

    @property
    def answered(self) -> bool:
        return self.action == "answer"

    @property
    def right_source(self) -> bool:
        return self.answered and bool(self.cited) and self.cited[0] in self.case.sources

    @property
    def passed(self) -> bool:
        if self.case.expect == "answer":
            return self.right_source
        if self.case.expect == "clarify":
            return self.action == "clarify"
        if self.action != "escalate":
            return False
        return self.case.route is None or self.route == self.case.route

    @property
    def got(self) -> str:
        if self.answered:
            return f"answer from {self.cited[0] if self.cited else '?'}"
        if self.action == "escalate":
            return f"escalate ({self.reason}) to {self.route}"
        if self.action == "clarify" and self.decision is not None:
            return "clarify: " + " or ".join(self.decision.options)
        return self.action

    @property
    def expected(self) -> str:
        if self.case.expect == "answer":
            return "answer from " + " or ".join(self.case.sources)
        if self.case.expect == "clarify":
            return "clarify"
        return "escalate" + (f" to {self.case.route}" if self.case.route else "")


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


@dataclass
class EvalReport:
    results: list[CaseResult] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        answerable = [r for r in self.results if r.case.expect == "answer"]
        escalations = [r for r in self.results if r.case.expect == "escalate"]
        clarifications = [r for r in self.results if r.case.expect == "clarify"]
        answered = [r for r in answerable if r.answered]
        right = [r for r in answerable if r.right_source]
        wrong = [r for r in answered if not r.right_source]
        # Answering a question that should have gone to a person, or guessing a product.
        answered_wrongly = [r for r in [*escalations, *clarifications] if r.answered]
        escalated = [r for r in escalations if r.action == "escalate"]
        routed = [r for r in escalated if r.case.route is not None]
        return {
            "answer_accuracy": _ratio(len(right), len(answered)),
            "wrong_answer_rate": _ratio(len(wrong) + len(answered_wrongly), len(self.results)),
            "deflection": _ratio(len(right), len(answerable)),
            "escalation_recall": _ratio(len(escalated), len(escalations)),
            "route_accuracy": _ratio(
                sum(1 for r in routed if r.route == r.case.route), len(routed)
            ),
            "clarify_accuracy": _ratio(
                sum(1 for r in clarifications if r.action == "clarify"), len(clarifications)
            ),
            "recall_at_1": _ratio(sum(1 for r in answerable if r.found_at == 1), len(answerable)),
            "recall_at_5": _ratio(
                sum(1 for r in answerable if r.found_at is not None and r.found_at <= 5),
                len(answerable),
            ),
            "cases": len(self.results),
        }

    def breakdown(self) -> dict[str, dict[str, Any]]:
        """Per kind of case: how many, how many passed, and what the bot did with them."""
        groups: dict[str, list[CaseResult]] = {}
        for result in self.results:
            groups.setdefault(result.category, []).append(result)
        table: dict[str, dict[str, Any]] = {}
        for name, results in sorted(groups.items()):
            outcomes: dict[str, int] = {}
            for result in results:
                label = (
                    result.action
                    if result.action != "escalate"
                    else (f"escalate:{result.reason}:{result.route}")
                )
                outcomes[label] = outcomes.get(label, 0) + 1
            table[name] = {
                "cases": len(results),
                "passed": sum(1 for r in results if r.passed),
                "outcomes": dict(sorted(outcomes.items(), key=lambda item: -item[1])),
            }
        return table

    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self, explain: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            **self.metrics(),
            "breakdown": self.breakdown(),
            "failures": [
                {
                    "id": r.case.id,
                    "message": r.case.messages[-1],
                    "expected": r.expected,
                    "got": r.got,
                }
                for r in self.failures()
            ],
        }
        if explain:
            data["cases_explained"] = [explain_case(r) for r in self.results]
        return data


def explain_case(result: CaseResult) -> dict[str, Any]:
    """One case with the bot's top passages, its evidence and its decision."""
    decision = result.decision
    return {
        "id": result.case.id,
        "message": result.case.messages[-1],
        "expected": result.expected,
        "got": result.got,
        "passed": result.passed,
        "decision": decision.summary() if decision else None,
        "evidence": {k: round(v, 4) for k, v in decision.evidence.items()} if decision else {},
        "passages": [
            {
                "path": hit.path,
                "section": hit.section,
                "score": round(hit.score, 4),
                "matched": hit.matched,
                "evidence": hit.evidence.to_dict() if hit.evidence else None,
            }
            for hit in (decision.hits[:5] if decision else ())
        ],
    }


async def run_case(runtime: GigCX, case: EvalCase) -> CaseResult:
    """Play the case's turns in a new conversation; judge the bot on the last one."""
    front_line = runtime.front_line
    conversation = await front_line.start_conversation(customer_id=f"eval-{case.id}")
    for turn_before in case.context:
        author = "customer" if turn_before.author == "customer" else "bot"
        meta = {} if author == "customer" else {"decision": {"action": "answer"}}
        await runtime.store.add_message(conversation.id, author, turn_before.text, meta=meta)
    turn = None
    for text in case.messages:
        turn = await front_line.handle_customer_message(conversation.id, text)
    assert turn is not None
    decision = turn.decision
    if decision is None:
        # Escalated on an earlier turn: the bot was silent on the last one.
        handoff = await runtime.store.open_handoff_for(conversation.id)
        return CaseResult(
            case=case,
            action="escalate" if handoff else "silent",
            reason=handoff.reason if handoff else None,
            route=handoff.route if handoff else None,
            cited=(),
        )
    cited = tuple(str(c["path"]) for reply in turn.replies for c in reply.citations)
    retrieved = tuple(dict.fromkeys(hit.path for hit in decision.hits))
    return CaseResult(
        case, decision.action, decision.reason, decision.route, cited, retrieved, decision
    )


async def run_eval(
    runtime: GigCX,
    cases: Sequence[EvalCase],
    on_case: Callable[[CaseResult], None] | None = None,
) -> EvalReport:
    report = EvalReport()
    for case in cases:
        result = await run_case(runtime, case)
        report.results.append(result)
        if on_case is not None:
            on_case(result)
    return report
