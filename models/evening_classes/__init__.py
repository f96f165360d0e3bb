"""Evening classes (家长夜校).

Owns scheduled classes (a catalogue course at a time and place, with seats, an audience, a sign-up
window and a cancellation deadline), sign-ups with their waitlist, check-in by rotating QR token or
by the teacher's roster, the hours credited for attendance, and the per-term counts schools are held
to. Seats are counted on the class row, which every sign-up and cancellation updates under its row
lock: there can never be more confirmed sign-ups than seats, and a freed seat goes to exactly one
waitlisted parent.
"""
