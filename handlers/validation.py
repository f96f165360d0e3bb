"""Validation errors in Chinese: each error Pydantic reports becomes a message a parent or an admin can
read ("至多 12"), beside its stable `type` and the field path `loc`. Messages our own validators raise
are already Chinese and pass through."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# By Pydantic's error type; {placeholders} come from the error's context.
MESSAGES: dict[str, str] = {
    "missing": "必填",
    "extra_forbidden": "不认识的字段",
    "none_required": "此处应为空",
    "greater_than": "应大于 {gt}",
    "greater_than_equal": "应不小于 {ge}",
    "less_than": "应小于 {lt}",
    "less_than_equal": "应不大于 {le}",
    "multiple_of": "应为 {multiple_of} 的倍数",
    "finite_number": "应为有限的数",
    "too_short": "至少 {min_length} 项",
    "too_long": "至多 {max_length} 项",
    "string_type": "应为文字",
    "string_unicode": "应为文字",
    "string_too_short": "至少 {min_length} 个字",
    "string_too_long": "至多 {max_length} 个字",
    "string_pattern_mismatch": "格式不正确",
    "enum": "应为以下之一：{expected}",
    "literal_error": "应为以下之一：{expected}",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "model_attributes_type": "应为对象",
    "list_type": "应为列表",
    "tuple_type": "应为列表",
    "set_type": "应为列表",
    "bool_type": "应为 true 或 false",
    "bool_parsing": "应为 true 或 false",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_parsing_size": "数字过大",
    "int_from_float": "应为整数",
    "float_type": "应为数字",
    "float_parsing": "应为数字",
    "decimal_type": "应为数字",
    "decimal_parsing": "应为数字",
    "decimal_max_digits": "数字位数过多",
    "decimal_max_places": "至多 {decimal_places} 位小数",
    "decimal_whole_digits": "数字过大",
    "date_type": "应为日期（如 2025-09-01）",
    "date_parsing": "应为日期（如 2025-09-01）",
    "date_from_datetime_parsing": "应为日期（如 2025-09-01）",
    "date_from_datetime_inexact": "应为日期（如 2025-09-01）",
    "datetime_type": "应为时间（如 2025-10-14T19:00:00+08:00）",
    "datetime_parsing": "应为时间（如 2025-10-14T19:00:00+08:00）",
    "datetime_from_date_parsing": "应为时间（如 2025-10-14T19:00:00+08:00）",
    "timezone_aware": "时间需带时区（如 +08:00）",
    "timezone_naive": "时间不应带时区",
    "time_type": "应为时刻（如 19:00）",
    "time_parsing": "应为时刻（如 19:00）",
    "uuid_type": "应为编号（UUID）",
    "uuid_parsing": "应为编号（UUID）",
    "url_type": "应为网址",
    "url_parsing": "应为网址",
    "url_scheme": "网址应以 {expected_schemes} 开头",
    "url_too_long": "网址过长",
    "json_invalid": "不是有效的 JSON",
    "union_tag_invalid": "类型应为以下之一：{expected_tags}",
    "union_tag_not_found": "缺少类型字段",
    "recursion_loop": "嵌套过深",
    "recursion_depth_exceeded": "嵌套过深",
}
FALLBACK = "内容不符合要求"


def chinese_message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in ("value_error", "assertion_error"):
        # Our validators speak Chinese; Pydantic prefixes "Value error, ".
        cause = error.get("ctx", {}).get("error")
        return str(cause) if cause is not None else FALLBACK
    template = MESSAGES.get(kind)
    if template is None:
        return FALLBACK
    context = dict(error.get("ctx", {}))
    if "expected" in context:  # "'school', 'grades' or 'invited'": the codes stay, the English goes
        context["expected"] = str(context["expected"]).replace(" or ", "、").replace(", ", "、")
    try:
        return template.format(**context)
    except (KeyError, IndexError):
        return template


def validation_errors(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    return [
        {"loc": [where, *e["loc"]], "msg": chinese_message(e), "type": e["type"]}
        for e in exc.errors(include_url=False)
    ]
