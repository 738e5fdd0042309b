"""`mos distill`: a big teacher's judgement in the fast edge model (label, train, export, compare)."""
