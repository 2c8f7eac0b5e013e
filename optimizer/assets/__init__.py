"""One module per asset type; each adds one Pyomo Block to the model."""
