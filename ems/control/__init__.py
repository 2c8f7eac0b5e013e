"""Fast-loop control rules: follow a plan's slot targets, or a rule-based fallback, and hold
the grid connection's limits."""
