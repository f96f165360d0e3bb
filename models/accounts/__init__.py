"""Accounts and organisation.

Owns the district → school → classroom → student tree, users (WeChat and password), the roles they hold,
the one-time binding codes that attach teachers and guardians to a school, guardian consent, login
sessions (refresh-token families) and the audit log. Everything else asks `principal.Principal` who a
caller is and `access` whether they may touch a school.
"""
