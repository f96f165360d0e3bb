"""The course catalogue in four tiers (general, foundation, custom, online).

Owns courses (the shipped catalogue synced from `course_catalog/`, plus courses districts and schools add
through the API), who may see each course, and the assignment of custom courses to families. A course
with no district is the shipped catalogue, visible everywhere; a district course is visible in that
district; a school course in that school. Custom courses are seen by staff in scope and by the families
they are assigned to, nobody else.
"""
