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
from gigcx.validation import field_problems, read_user_file

METRICS = (
    "answer_accuracy",
    "wrong_answer_rate",
    "deflection",
    "escalation_recall",
    "route_accuracy",
)


class CaseFileError(Exception):
    """The cases file cannot be used; the message names the file, line and field."""


class EvalCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    messages: list[str] = Field(min_length=1)
    expect: Literal["answer", "escalate"]
    sources: list[str] = Field(default_factory=list)
    route: Literal["expert", "staff"] | None = None

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
            hint = "id, messages, expect, sources, route"
            problems.extend(f"{where}: {problem}" for problem in field_problems(error, hint))
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
        if self.action != "escalate":
            return False
        return self.case.route is None or self.route == self.case.route

    @property
    def got(self) -> str:
        if self.answered:
            return f"answer from {self.cited[0] if self.cited else '?'}"
        if self.action == "escalate":
            return f"escalate ({self.reason}) to {self.route}"
        return self.action

    @property
    def expected(self) -> str:
        if self.case.expect == "answer":
            return "answer from " + " or ".join(self.case.sources)
        return "escalate" + (f" to {self.case.route}" if self.case.route else "")


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


@dataclass
class EvalReport:
    results: list[CaseResult] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        answerable = [r for r in self.results if r.case.expect == "answer"]
        escalations = [r for r in self.results if r.case.expect == "escalate"]
        answered = [r for r in answerable if r.answered]
        right = [r for r in answerable if r.right_source]
        wrong = [r for r in answered if not r.right_source]
        answered_wrongly = [r for r in escalations if r.answered]
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
            "cases": len(self.results),
        }

    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.metrics(),
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


async def run_case(runtime: GigCX, case: EvalCase) -> CaseResult:
    """Play the case's turns in a new conversation; judge the bot on the last one."""
    front_line = runtime.front_line
    conversation = await front_line.start_conversation(customer_id=f"eval-{case.id}")
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
    return CaseResult(case, decision.action, decision.reason, decision.route, cited)


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
