"""The actions the audit log records: an enumeration, never free text, so a reviewer can ask for every
read of one kind of record."""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    school_created = "school_created"
    staff_account_created = "staff_account_created"
    classroom_created = "classroom_created"
    student_created = "student_created"
    roster_imported = "roster_imported"
    teacher_created = "teacher_created"
    teacher_code_issued = "teacher_code_issued"
    guardian_codes_issued = "guardian_codes_issued"
    guardians_read = "guardians_read"  # who the guardians of a child are
    students_read = "students_read"  # a school's list of children
    course_created = "course_created"
    course_assigned = "course_assigned"
    hours_adjusted = "hours_adjusted"
    requirements_set = "requirements_set"
    term_requirement_set = "term_requirement_set"
    evening_class_scheduled = "evening_class_scheduled"
    evening_roster_read = "evening_roster_read"  # which families signed up for a class
    attendance_marked = "attendance_marked"
    survey_created = "survey_created"
    survey_changed = "survey_changed"
    survey_published = "survey_published"  # the sample is drawn from the roster
    survey_closed = "survey_closed"
    survey_exported = "survey_exported"  # the evaluators' workbook
    survey_text_moderated = "survey_text_moderated"  # a held free-text answer released or rejected

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {
    AuditAction.school_created: "新建学校",
    AuditAction.staff_account_created: "新建管理员账号",
    AuditAction.classroom_created: "新建班级",
    AuditAction.student_created: "新建学生",
    AuditAction.roster_imported: "导入名单",
    AuditAction.teacher_created: "新建教师",
    AuditAction.teacher_code_issued: "发放教师绑定码",
    AuditAction.guardian_codes_issued: "发放家长绑定码",
    AuditAction.guardians_read: "查看学生监护人",
    AuditAction.students_read: "查看学生名单",
    AuditAction.course_created: "新建课程",
    AuditAction.course_assigned: "分配定制课",
    AuditAction.hours_adjusted: "调整学时",
    AuditAction.requirements_set: "设置学时要求",
    AuditAction.term_requirement_set: "设置夜校次数要求",
    AuditAction.evening_class_scheduled: "开设家长夜校",
    AuditAction.evening_roster_read: "查看夜校报名名单",
    AuditAction.attendance_marked: "登记出席",
    AuditAction.survey_created: "新建满意度调查",
    AuditAction.survey_changed: "修改满意度调查",
    AuditAction.survey_published: "发布满意度调查（抽样）",
    AuditAction.survey_closed: "结束满意度调查",
    AuditAction.survey_exported: "导出满意度调查结果",
    AuditAction.survey_text_moderated: "审核调查意见建议",
}
