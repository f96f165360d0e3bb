"""The web console for school admins, district admins and evaluators, under /console/ in the API's own
process: Tornado templates (templates/), vendored scripts and styles (static/, each with its licence),
no build step. Pages declare `Operation`s derived from the API's (the same roles and scope, checked by the
same handler base, with `AuthMode.session`) and call the same domain services; sessions.py holds the
session cookie and CSRF token."""
