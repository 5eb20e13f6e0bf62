"""`make bench`: the Lintas pipeline under open-loop load, next to raw baselines."""
