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
    home_visit_created = "home_visit_created"
    home_visit_read = "home_visit_read"  # subject.fields names the sensitive fields the answer carried
    home_visit_updated = "home_visit_updated"
    student_home_visits_read = "student_home_visits_read"
    home_visits_assigned = "home_visits_assigned"
    followup_raised = "followup_raised"
    followup_answered = "followup_answered"
    followup_assigned = "followup_assigned"
    followup_escalated = "followup_escalated"
    home_visit_photo_added = "home_visit_photo_added"
    home_visit_photo_read = "home_visit_photo_read"
    home_visit_summary_read = "home_visit_summary_read"  # a district's figures open circumstances to count

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
    AuditAction.home_visit_created: "新建家访记录",
    AuditAction.home_visit_read: "查看家访记录",
    AuditAction.home_visit_updated: "修改家访记录",
    AuditAction.student_home_visits_read: "查看学生的家访记录",
    AuditAction.home_visits_assigned: "分配家访学生",
    AuditAction.followup_raised: "登记家长反馈事项",
    AuditAction.followup_answered: "答复跟进事项",
    AuditAction.followup_assigned: "转交跟进事项",
    AuditAction.followup_escalated: "上报跟进事项",
    AuditAction.home_visit_photo_added: "添加家访照片",
    AuditAction.home_visit_photo_read: "查看家访照片",
    AuditAction.home_visit_summary_read: "查看区级家访统计",
}
