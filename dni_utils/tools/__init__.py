"""Plumbing that no result depends on: the grid runner, devices, checkpoints, wall clocks, result
files, the README generator, executed-copy cleaning, exercise generation, plotting and benches."""
