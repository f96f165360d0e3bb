"""The audit log: who did or read what, when, on which school's records. An endpoint names its action in
its `Operation`; the request's transaction writes the event with the request's own writes, so an event
exists exactly when what it records was committed (a read of children's data included)."""
