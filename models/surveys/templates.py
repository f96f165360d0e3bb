"""The standard questionnaires shipped as versioned data files in `templates/` (YAML, in Chinese)."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from models.surveys.schemas import DimensionIn, _unique_keys

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    version: str
    title: str = Field(max_length=80)
    intro: str
    dimensions: list[DimensionIn]


@functools.cache
def load_template(key: str) -> Template:
    with (TEMPLATE_DIR / f"{key}.yaml").open(encoding="utf-8") as f:
        template = Template.model_validate(yaml.safe_load(f))
    _unique_keys(template.dimensions)
    if template.key != key:
        raise ValueError(f"template file {key}.yaml names itself {template.key}")
    return template
