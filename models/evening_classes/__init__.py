"""Evening classes (家长夜校).

Owns scheduled classes (a catalogue course at a time and place, with seats, an audience, a sign-up
window and a cancellation deadline), sign-ups with their waitlist, check-in by rotating QR token or
by the teacher's roster, the hours credited for attendance, and the per-term counts schools are held
to. Seats taken and parents waiting are counted on the class row, which every sign-up and
cancellation updates under its row lock: there can never be more confirmed sign-ups than seats, a
freed seat goes to exactly one waitlisted parent, and a new waitlist place knows its position.

Sign-ups are written in batches (`signups.sign_up_batch`, run by `infra.group_commit.GroupCommit`,
one per process): in a registration rush, the sign-ups that arrive while one batch is being written
go together in the next. A batch reads its classes and checks audience and window in Python, then
takes every seat and waitlist place in one statement of its own (autocommit), which locks the classes
in id order only for as long as PostgreSQL runs it. Each parent is answered on their own (a refusal
for one is not a refusal for the batch). A quiet service writes each sign-up at once.

Modules, one job each:
- `tables` (SQLAlchemy), `schemas` (Pydantic in and out), `rules` (pure: terms, check-in windows and
  rotating tokens, how a time reads in a message), `errors` (SignupClosed, AlreadySignedUp, ...).
- `scheduling`: scheduling a class (`schedule`), its course, audience and windows checked.
- `visibility`: who sees which class (`visible_to`, `get_class`, `staff_class`; `in_audience` is the
  same audience rule checked in Python), listing them (`list_classes`) and how a class reads to the
  caller, their own sign-up and waitlist position included (`describe`).
- `signups`: signing up in batches (`SignupRequest`, `sign_up_batch`, its SQL `CLASSES` and
  `TAKE_PLACES`) and cancelling, with the freed seat going to the first on the waitlist
  (`cancel_signup`).
- `attendance`: check-in by QR token (`check_in`) or on the teacher's roster (`mark_on_roster`),
  attendance recorded and hours credited once (`record_attendance`), the roster itself (`roster`).
- `term_counts`: per-term counts of each school (`term_summaries`, `district_summary`) against the
  district's requirement (`required_per_term`, `set_required_per_term`).
- `reminders`: the day-before reminder of a confirmed seat (`class_reminder`, `REMINDER_BEFORE`).
"""
