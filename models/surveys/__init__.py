"""Parent satisfaction surveys (家长满意度调查): what a district asks, whom, and what the answers say.

- A district admin writes a survey as a draft (questions grouped in dimensions, or the shipped standard
  questionnaire in `templates/`), publishes it — which freezes the questions and draws the sample from the
  roster with a recorded seed (`sampling`) — and closes it.
- A parent answers once for each sampled child (`answering`). Whether a child's household has answered
  (`survey_participation`) is stored apart from the answers (`survey_response`), and nothing in the
  database pairs them: an accepted answer waits sealed with the field key (which lives outside the
  database) in `survey_pending_response`, and is written out in plain only in shuffled batches of at
  least `MIX_BATCH` of one school and grade, in a transaction of its own, with random ids and no time
  finer than the day (`answering.mix`).
- `statistics` computes the satisfaction index (0–100) per question, dimension and overall, post-
  stratified by the school-and-grade populations recorded at publishing, with a 95% interval (finite-
  population correction) and suppression of every figure resting on fewer than ten responses;
  `export` writes it as an Excel workbook for the evaluators.
"""
