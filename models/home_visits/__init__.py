"""Home visits (家访) under 四到家、三带回, and the closed loop (闭环跟进) of what is brought back.

Owns: a visit record (students, visiting teachers, time, mode, the four 四到家 items, a draft or submitted
status) with its sensitive part (`private_note`, `circumstances`) encrypted at rest; the follow-ups every
三带回 item becomes (owner, due date, states open → in_progress → answered → closed, a history of every step);
who may read which part (rules.py); coverage and closure figures for schools and districts."""
