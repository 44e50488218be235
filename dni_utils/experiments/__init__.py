"""One module per notebook, named after it (``notebooks/05_rnn_copy.ipynb`` ->
``nb05_rnn_copy``): its profile table, grid, tables, claims and README rows, and next to the
claims their checks in words (``CHECKS``) and the notebook's line in the README (``SUMMARY``).
``ffgrid`` is the feed-forward grid shared by notebooks 01 and 02 (and used by 03, 04 and 09);
``profiles`` and ``stats`` are the rules every experiment judges its claims by; ``verdicts`` reads a
result file's checks in words and computes the verdict on the paper's claim; ``course`` backs the
course."""
