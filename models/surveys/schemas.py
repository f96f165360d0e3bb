"""What the survey endpoints accept and return."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    model_validator,
)

from models.times import ShanghaiTime

Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,32}$")]
QuestionKind = Literal["likert5", "single", "multi", "text"]
Weight = Annotated[float, Field(gt=0, le=100)]
DONT_KNOW = "dont_know"  # 不了解: kept with the answers, excluded from every index

LIKERT_LABELS = {1: "非常不满意", 2: "不满意", 3: "一般", 4: "满意", 5: "非常满意", DONT_KNOW: "不了解"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OptionIn(Strict):
    key: Key
    label: str = Field(min_length=1, max_length=60)


class QuestionIn(Strict):
    key: Key
    kind: QuestionKind
    text: str = Field(min_length=1, max_length=200)
    options: list[OptionIn] | None = Field(None, min_length=2, max_length=20)
    required: bool | None = Field(None, description="默认：文字题选填，其余必答")
    weight: Weight = 1.0

    @model_validator(mode="after")
    def _options(self) -> QuestionIn:
        if (self.kind in ("single", "multi")) != (self.options is not None):
            raise ValueError("options are given exactly for single and multi questions")
        if self.options and len({o.key for o in self.options}) != len(self.options):
            raise ValueError("option keys repeat")
        if self.required is None:
            self.required = self.kind != "text"
        return self


class DimensionIn(Strict):
    key: Key
    title: str = Field(min_length=1, max_length=40)
    weight: Weight = 1.0
    questions: list[QuestionIn] = Field(min_length=1, max_length=50)


def _unique_keys(dimensions: list[DimensionIn]) -> list[DimensionIn]:
    if len({d.key for d in dimensions}) != len(dimensions):
        raise ValueError("dimension keys repeat")
    keys = [q.key for d in dimensions for q in d.questions]
    if len(set(keys)) != len(keys):
        raise ValueError("question keys repeat")
    return dimensions


class AudienceIn(Strict):
    school_ids: list[uuid.UUID] | None = Field(
        None, min_length=1, max_length=1000, description="默认全区学校"
    )
    grades: list[Annotated[int, Field(ge=0, le=12)]] | None = Field(
        None, min_length=1, max_length=13, description="默认所有年级"
    )


class SamplingIn(Strict):
    method: Literal["census", "stratified"] = "census"
    per_school: int | None = Field(None, ge=1, le=100_000, description="每校抽取的学生数")
    fraction: float | None = Field(None, gt=0, le=1, description="每校抽取的比例")

    @model_validator(mode="after")
    def _size(self) -> SamplingIn:
        given = (self.per_school is not None) + (self.fraction is not None)
        if self.method == "census" and given:
            raise ValueError("a census takes no per_school or fraction")
        if self.method == "stratified" and given != 1:
            raise ValueError("stratified sampling takes exactly one of per_school and fraction")
        return self


class SurveyFields(Strict):
    title: str | None = Field(None, min_length=1, max_length=80)
    intro: str | None = Field(None, max_length=2000)
    opens_at: AwareDatetime | None = None
    closes_at: AwareDatetime | None = None
    audience: AudienceIn | None = None
    sampling: SamplingIn | None = None
    dimensions: list[DimensionIn] | None = Field(None, min_length=1, max_length=20)

    @model_validator(mode="after")
    def _consistent(self) -> SurveyFields:
        if self.dimensions is not None:
            _unique_keys(self.dimensions)
        if self.opens_at and self.closes_at and self.closes_at <= self.opens_at:
            raise ValueError("closes_at must be after opens_at")
        return self


class SurveyIn(SurveyFields):
    """A new draft: its own questions, or `{"from_template": "parent-satisfaction"}` (then editable)."""

    from_template: Literal["parent-satisfaction"] | None = None

    @model_validator(mode="after")
    def _source(self) -> SurveyIn:
        if (self.from_template is None) == (self.dimensions is None):
            raise ValueError("give either dimensions or from_template")
        if self.from_template is None and self.title is None:
            raise ValueError("title is required")
        return self


class SurveyPatch(SurveyFields):
    """A draft changes in every field; a published survey only in a later closes_at."""


class OptionOut(BaseModel):
    key: str
    label: str


class QuestionOut(BaseModel):
    key: str
    kind: QuestionKind
    text: str
    options: list[OptionOut] | None = None
    required: bool
    weight: float


class DimensionOut(BaseModel):
    key: str
    title: str
    weight: float
    questions: list[QuestionOut]


class SamplingOut(BaseModel):
    method: Literal["census", "stratified"]
    per_school: int | None = None
    fraction: float | None = None
    seed: int | None = Field(None, description="发布时抽样所用的随机种子：用同一份名单和种子可重复抽样")


class AudienceOut(BaseModel):
    school_ids: list[uuid.UUID] | None
    grades: list[int] | None


class SurveyOut(BaseModel):
    id: uuid.UUID
    district_id: uuid.UUID
    title: str
    intro: str
    status: Literal["draft", "published", "closed"]
    school_year: str | None
    opens_at: ShanghaiTime | None
    closes_at: ShanghaiTime | None
    audience: AudienceOut
    sampling: SamplingOut
    template: str | None
    template_version: str | None
    dimensions: list[DimensionOut]
    sample_size: int | None = Field(None, description="发布后：抽中的学生数")
    created_at: ShanghaiTime
    published_at: ShanghaiTime | None
    closed_at: ShanghaiTime | None


class SurveyList(BaseModel):
    items: list[SurveyOut]


class RateRow(BaseModel):
    school_id: uuid.UUID
    school_name: str
    grade: int | None = Field(None, description="按年级的行；学校合计为 null")
    sampled: int
    responses: int
    response_rate: float | None


class ResponseRates(BaseModel):
    survey_id: uuid.UUID
    status: str
    sampled: int
    responses: int
    response_rate: float | None
    schools: list[RateRow]
    grades: list[RateRow]


# ---- answering ---------------------------------------------------------------------------------
Answer = StrictInt | StrictStr | list[StrictStr]


class ResponseIn(Strict):
    student_id: uuid.UUID
    answers: dict[Key, Answer] = Field(max_length=200)


class ResponseAccepted(BaseModel):
    """Nothing that names the response: there is nothing to fetch it by."""

    accepted: bool = True
    survey_id: uuid.UUID
    student_id: uuid.UUID


class MySurvey(BaseModel):
    survey_id: uuid.UUID
    title: str
    intro: str
    closes_at: ShanghaiTime
    student_id: uuid.UUID
    student_name: str
    answered: bool
    dimensions: list[DimensionOut]


class MySurveys(BaseModel):
    items: list[MySurvey]


# ---- results -------------------------------------------------------------------------------------
class Figure(BaseModel):
    value: float | None = Field(description="满意度指数 0–100；样本不足时为 null")
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = Field(description="作答人数（不含“不了解”）")
    suppressed: bool = False
    note: str | None = Field(None, description="样本不足")


class Share(BaseModel):
    key: str
    label: str
    count: int
    share: float


class QuestionResult(BaseModel):
    key: str
    dimension: str
    kind: QuestionKind
    text: str
    figure: Figure | None = Field(None, description="量表题的指数")
    distribution: list[Share] | None = Field(None, description="各选项人数（含“不了解”）；样本不足时为 null")
    distribution_suppressed: bool = False


class DimensionResult(BaseModel):
    key: str
    title: str
    weight: float
    figure: Figure


class GroupResult(BaseModel):
    key: str = Field(description="district、学校 id 或学段")
    label: str
    sampled: int
    responses: int
    response_rate: float | None
    suppressed: bool = Field(description="作答不足 10 份（或为防止推算而隐藏）：不显示任何数值")
    overall: Figure
    dimensions: list[DimensionResult]
    questions: list[QuestionResult]


class SurveyResults(BaseModel):
    survey_id: uuid.UUID
    title: str
    status: str
    school_year: str | None
    method: str
    group_by: Literal["none", "school", "grade_band"]
    minimum_cell: int
    groups: list[GroupResult]


class SheetQuery(Strict):
    sheet: Literal["overview", "dimensions", "questions", "schools", "trend", "comments"] = Field(
        description="概览、维度、题目、学校、逐年对比、意见建议"
    )


class ResultsQuery(Strict):
    group_by: Literal["none", "school", "grade_band"] = "none"


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
