"""What the home-visit and follow-up endpoints accept and return."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SerializeAsAny, StringConstraints

from models.home_visits.rules import Circumstance, Kind, Mode, Source, State
from models.times import ShanghaiTime

Text500 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Note200 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
SchoolYear = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{4}$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class FourToHomeItem(_In):
    done: bool = False
    note: Note200 | None = None


class FourToHome(_In):
    """四到家: care 关心关爱, policy 方针政策, opinions 征求意见, resources 教育资源."""

    care: FourToHomeItem = Field(default_factory=FourToHomeItem)
    policy: FourToHomeItem = Field(default_factory=FourToHomeItem)
    opinions: FourToHomeItem = Field(default_factory=FourToHomeItem)
    resources: FourToHomeItem = Field(default_factory=FourToHomeItem)


class ThreeBackIn(_In):
    kind: Kind
    text: Text500


class HomeVisitIn(_In):
    student_ids: list[uuid.UUID] = Field(min_length=1, max_length=10)
    teacher_ids: list[uuid.UUID] = Field(
        default_factory=list, max_length=6, description="家访老师（默认含本人）及同行老师"
    )
    visited_at: AwareDatetime
    duration_minutes: int | None = Field(None, ge=1, le=600)
    mode: Mode = Field(description="home 入户 / school 到校 / phone 电话 / video 视频")
    four_to_home: FourToHome = Field(default_factory=FourToHome)
    three_back: list[ThreeBackIn] = Field(default_factory=list, max_length=20)
    private_note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None
    circumstances: list[Circumstance] | None = Field(None, max_length=6)
    status: Literal["draft", "submitted"] = "submitted"


class HomeVisitPatch(_In):
    """Only the fields given change; `three_back` replaces a draft's items (a submitted visit's items are
    follow-ups, changed through their own endpoints)."""

    teacher_ids: list[uuid.UUID] | None = Field(None, min_length=1, max_length=6)
    visited_at: AwareDatetime | None = None
    duration_minutes: int | None = Field(None, ge=1, le=600)
    mode: Mode | None = None
    four_to_home: FourToHome | None = None
    three_back: list[ThreeBackIn] | None = Field(None, max_length=20)
    private_note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None
    circumstances: list[Circumstance] | None = Field(None, max_length=6)
    status: Literal["draft", "submitted"] | None = None


class PersonRef(BaseModel):
    id: uuid.UUID
    name: str


class ThreeBackOut(BaseModel):
    kind: Kind
    text: str
    followup_id: uuid.UUID | None = None
    state: State | None = None
    answer: str | None = None


class HomeVisitOut(BaseModel):
    """The part of a visit every caller who may see it gets (parents included)."""

    id: uuid.UUID
    school_id: uuid.UUID
    school_year: str
    status: Literal["draft", "submitted"]
    students: list[PersonRef]
    teachers: list[PersonRef]
    visited_at: ShanghaiTime
    duration_minutes: int | None
    mode: Mode
    four_to_home: FourToHome
    three_back: list[ThreeBackOut]
    created_at: ShanghaiTime
    updated_at: ShanghaiTime


class HomeVisitSensitiveOut(HomeVisitOut):
    """Only for the visiting teachers, the children's head teachers now and the school's admins."""

    private_note: str | None
    circumstances: list[Circumstance]


class PhotoOut(BaseModel):
    id: uuid.UUID
    content_type: str
    size: int


class HomeVisitPage(BaseModel):
    items: list[SerializeAsAny[HomeVisitOut]]
    next_cursor: str | None = None


class TodoQuery(_In):
    school_year: SchoolYear | None = Field(None, description="默认本学年")


class LastVisit(BaseModel):
    visit_id: uuid.UUID
    visited_at: ShanghaiTime
    mode: Mode


class TodoItem(BaseModel):
    student_id: uuid.UUID
    student_name: str
    school_id: uuid.UUID
    classroom_id: uuid.UUID
    classroom_name: str
    reason: Literal["head_teacher", "assigned"]
    last_visit: LastVisit | None


class TodoOut(BaseModel):
    school_year: str
    students: int
    visited: int
    items: list[TodoItem]


class AssignmentIn(_In):
    teacher_id: uuid.UUID
    student_ids: list[uuid.UUID] = Field(min_length=1, max_length=200)
    school_year: SchoolYear | None = Field(None, description="默认本学年")


class AssignmentOut(BaseModel):
    school_year: str
    teacher_id: uuid.UUID
    assigned: int


# ---- follow-ups ---------------------------------------------------------------------------------------
class FollowupStep(BaseModel):
    at: ShanghaiTime
    action: str
    state: State
    detail: dict[str, str | int | None]


class FollowupOut(BaseModel):
    id: uuid.UUID
    school_id: uuid.UUID
    student_id: uuid.UUID
    student_name: str
    visit_id: uuid.UUID | None
    source: Source
    kind: Kind
    text: str
    state: State
    owner_teacher_id: uuid.UUID | None
    escalated: bool
    due_at: ShanghaiTime
    overdue: bool
    answer: str | None
    answered_at: ShanghaiTime | None
    closed_at: ShanghaiTime | None
    rating: int | None
    reopen_count: int
    created_at: ShanghaiTime
    history: list[FollowupStep] | None = None


class FollowupPage(BaseModel):
    items: list[FollowupOut]
    next_cursor: str | None = None


class FollowupQuery(_In):
    state: State | None = None
    overdue: bool | None = None
    owner: uuid.UUID | None = Field(None, description="负责老师 id")
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = None


class AnswerIn(_In):
    answer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class AssignIn(_In):
    teacher_id: uuid.UUID | None = Field(None, description="另一位本校老师；不填则交给学校管理员")


class EscalateIn(_In):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class ConfirmIn(_In):
    rating: int | None = Field(None, ge=1, le=5)


class ReopenIn(_In):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class RaiseIn(_In):
    """A parent's letter to the principal's mailbox (校长信箱) about their own child."""

    student_id: uuid.UUID
    kind: Kind
    text: Text500


class StaffRaiseIn(_In):
    """Staff logging what a parent raised by phone or at a parent meeting."""

    student_id: uuid.UUID
    source: Literal["hotline", "meeting"]
    kind: Kind
    text: Text500


# ---- statistics ---------------------------------------------------------------------------------------
class SummaryQuery(_In):
    school_year: SchoolYear | None = Field(None, description="默认本学年")
    from_: date | None = Field(None, alias="from", description="活动期间起（含），如千师访万家")
    to: date | None = Field(None, description="活动期间止（含）")


class FollowupFigures(BaseModel):
    by_state: dict[str, int]
    total: int
    closure_rate: float | None = Field(description="已关闭（含家长未回复自动关闭）/ 总数")
    closed_without_reply: int
    median_days_to_answer: float | None
    overdue: int
    reopen_rate: float | None
    mean_rating: float | None


class ClassroomCoverage(BaseModel):
    classroom_id: uuid.UUID
    classroom_name: str
    students: int
    visited: int
    coverage: float | None = Field(description="至少家访一次的学生占比（0–1）")
    visits_by_mode: dict[str, int]


class SchoolSummary(BaseModel):
    school_id: uuid.UUID
    school_year: str
    students: int
    visited: int
    coverage: float | None
    visits: int
    visits_by_mode: dict[str, int]
    classrooms: list[ClassroomCoverage]
    followups: FollowupFigures


class SchoolRow(BaseModel):
    school_id: uuid.UUID
    school_name: str
    students: int
    visited: int
    coverage: float | None
    visits: int
    followups: int
    closure_rate: float | None
    overdue: int


class DistrictSummary(BaseModel):
    district_id: uuid.UUID
    school_year: str
    schools: list[SchoolRow]
    students: int
    visited: int
    coverage: float | None
    visits: int
    followups: FollowupFigures
    children_in_difficult_circumstances: int | None = Field(
        description="区级合计；少于 5 时不显示（null），以免能认出某一家庭"
    )
