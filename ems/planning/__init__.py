"""From a site config, its inputs and its carried state to an optimiser Problem."""
