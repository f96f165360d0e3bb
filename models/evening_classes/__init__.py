"""Evening classes (家长夜校).

Owns scheduled classes (a catalogue course at a time and place, with seats, an audience, a sign-up
window and a cancellation deadline), sign-ups with their waitlist, check-in by rotating QR token or
by the teacher's roster, the hours credited for attendance, and the per-term counts schools are held
to. Seats are counted on the class row, which every sign-up and cancellation updates under its row
lock: there can never be more confirmed sign-ups than seats, and a freed seat goes to exactly one
waitlisted parent.

Sign-ups are written in batches (`service.sign_up_batch`, run by `server.group_commit.GroupCommit`,
one per process): in a registration rush, the sign-ups that arrive while one transaction is being
written go together in the next, which locks their classes in id order, takes every seat and waitlist
place in one statement and answers each parent on its own (a refusal for one is not a refusal for the
batch). A quiet service writes each sign-up at once, in a transaction of its own.
"""
