"""The expert registry: who may take handoffs, with which skills, tier and capacity.

Kept in the store, seeded from the brand's `experts.yaml` by `gigcx experts sync`:

    - id: alex                        # their gigcx id: what handoffs and the ledger name
      handles: {slack: U04ALEX}       # how each channel knows them
      name: Alex Moreau
      skills: [x2, x1, bluetooth]     # product ids and topics; matched against handoff tags
      languages: [en, fr]
      tier: gig                       # gig (paid per resolution) | staff (in-house)
      capacity: 3                     # open conversations at once
      active: true

An entry written before ids existed (`slack_user_id: U04ALEX`, no `id:`) keeps working: its
Slack id is its `slack` handle and, unchanged, its gigcx id. Giving such an entry an `id:`
later, or changing an id, keeps the same expert as long as one of their handles stays: their
handoffs, ledger rows and notes move to the new id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from gigcx.store import ConversationStore
from gigcx.store.models import Expert
from gigcx.validation import field_problems, read_user_file, yaml_problem


class ExpertsFileError(Exception):
    """The experts file cannot be used; the message names the file, entry, line and field."""


HandleText = Annotated[str, StringConstraints(min_length=1, max_length=128)]
SLACK_USER_ID = r"^[UW][A-Z0-9]{2,31}$"
# A gigcx id: lower-case letters, digits, "-" and "_", starting with a letter or digit.
EXPERT_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CHANNEL = r"^[a-z][a-z0-9_-]{0,31}$"


class ExpertEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, pattern=EXPERT_ID)
    handles: dict[Annotated[str, StringConstraints(pattern=CHANNEL)], HandleText] = Field(
        default_factory=dict
    )
    # The form before ids: the same as `handles: {slack: ...}`, and the id when none is given.
    slack_user_id: str | None = Field(None, pattern=SLACK_USER_ID)
    name: str = Field(min_length=1, max_length=128)
    skills: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=lambda: ["en"])
    tier: Literal["gig", "staff"] = "gig"
    capacity: int = Field(3, ge=1, le=50)
    active: bool = True

    def problems(self) -> list[str]:
        """`field: problem` for what the fields' own checks cannot see."""
        slack = self.handles.get("slack")
        if slack is not None and not re.fullmatch(SLACK_USER_ID, slack):
            return [f"handles.slack: {slack!r} is not a Slack user id (U...)"]
        if self.slack_user_id is not None and slack not in (None, self.slack_user_id):
            return [f"slack_user_id: is {self.slack_user_id} but handles.slack is {slack}"]
        if self.id is None and self.slack_user_id is None:
            return ["id: is required (or slack_user_id, the form before ids)"]
        return []

    def model_post_init(self, context: object) -> None:
        if self.slack_user_id is not None and "slack" not in self.handles:
            self.handles = {**self.handles, "slack": self.slack_user_id}

    @property
    def key(self) -> str:
        """The gigcx id: `id`, or for an entry from before ids, its Slack user id."""
        key = self.id or self.slack_user_id
        assert key is not None  # checked above
        return key

    def to_row(self) -> Expert:
        return Expert(
            key=self.key,
            handles=dict(self.handles),
            name=self.name,
            skills=[skill.lower() for skill in self.skills],
            languages=self.languages,
            tier=self.tier,
            capacity=self.capacity,
            active=self.active,
        )


def read_experts_file(path: Path) -> list[ExpertEntry]:
    """Every entry of `path`; raises ExpertsFileError listing each problem (nothing is read)."""
    text = read_user_file(path, "experts file", ExpertsFileError)
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ExpertsFileError(yaml_problem(path, error)) from None
    if data is None:
        return []
    if not isinstance(data, list) or node is None or not isinstance(node, yaml.SequenceNode):
        raise ExpertsFileError(f"{path}: expected a list of experts")
    problems: list[str] = []
    entries: list[ExpertEntry] = []
    seen: dict[tuple[str, str], int] = {}
    for number, (item, item_node) in enumerate(zip(data, node.value, strict=True), start=1):
        line = item_node.start_mark.line + 1
        where = f"{path}:{line}: expert {number}"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a mapping with id, handles and name")
            continue
        try:
            entry = ExpertEntry.model_validate(item)
        except ValidationError as error:
            problems.extend(f"{where}: {problem}" for problem in field_problems(error))
            continue
        if entry.problems():
            problems.extend(f"{where}: {problem}" for problem in entry.problems())
            continue
        taken = [(f"id {entry.key}", seen.get(("id", entry.key)))] + [
            (f"handles.{channel} {handle}", seen.get((channel, handle)))
            for channel, handle in entry.handles.items()
        ]
        clashes = [f"{what} is already expert {first}" for what, first in taken if first]
        if clashes:
            problems.extend(f"{where}: {clash}" for clash in clashes)
            continue
        seen[("id", entry.key)] = number
        seen.update({(channel, handle): number for channel, handle in entry.handles.items()})
        entries.append(entry)
    if problems:
        raise ExpertsFileError("\n".join(problems))
    return entries


async def sync_experts(store: ConversationStore, brand: str, path: Path) -> dict[str, list[str]]:
    """Make the brand's registry match the file; returns who was added, updated, deactivated."""
    entries = read_experts_file(path)
    return await store.sync_experts(brand, [entry.to_row() for entry in entries])
