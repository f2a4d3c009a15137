"""The expert registry: who may take handoffs, with which skills, tier and capacity.

Kept in the store, seeded from the brand's `experts.yaml` by `gigcx experts sync`:

    - slack_user_id: U04ALEX
      name: Alex Moreau
      skills: [x2, x1, bluetooth]     # product ids and topics; matched against handoff tags
      languages: [en, fr]
      tier: gig                       # gig (paid per resolution) | staff (in-house)
      capacity: 3                     # open conversations at once
      active: true
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gigcx.store import ConversationStore
from gigcx.store.models import Expert
from gigcx.validation import field_problems, read_user_file, yaml_problem


class ExpertsFileError(Exception):
    """The experts file cannot be used; the message names the file, entry, line and field."""


class ExpertEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slack_user_id: str = Field(pattern=r"^[UW][A-Z0-9]{2,31}$")
    name: str = Field(min_length=1, max_length=128)
    skills: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=lambda: ["en"])
    tier: Literal["gig", "staff"] = "gig"
    capacity: int = Field(3, ge=1, le=50)
    active: bool = True

    def to_row(self) -> Expert:
        return Expert(
            slack_user_id=self.slack_user_id,
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
    seen: dict[str, int] = {}
    for number, (item, item_node) in enumerate(zip(data, node.value, strict=True), start=1):
        line = item_node.start_mark.line + 1
        where = f"{path}:{line}: expert {number}"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a mapping with slack_user_id and name")
            continue
        try:
            entry = ExpertEntry.model_validate(item)
        except ValidationError as error:
            problems.extend(f"{where}: {problem}" for problem in field_problems(error))
            continue
        if entry.slack_user_id in seen:
            first = seen[entry.slack_user_id]
            problems.append(
                f"{where}: slack_user_id {entry.slack_user_id} is already expert {first}"
            )
            continue
        seen[entry.slack_user_id] = number
        entries.append(entry)
    if problems:
        raise ExpertsFileError("\n".join(problems))
    return entries


async def sync_experts(store: ConversationStore, brand: str, path: Path) -> dict[str, list[str]]:
    """Make the brand's registry match the file; returns who was added, updated, deactivated."""
    entries = read_experts_file(path)
    return await store.sync_experts(brand, [entry.to_row() for entry in entries])
