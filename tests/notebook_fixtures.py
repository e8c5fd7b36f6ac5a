"""Limits for the notebooks the tests execute (through :func:`kadapter.notebook_run.execute_notebook`, which also
sets a kernel start timeout): a lost kernel fails the test in minutes instead of hanging CI."""

#: Seconds one cell of a test notebook may run: the slowest smoke cell takes ~3 min on a loaded 2-core machine.
NOTEBOOK_CELL_TIMEOUT = 600
