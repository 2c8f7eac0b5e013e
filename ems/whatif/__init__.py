"""What-if planning: simulate a site over days to a year under a strategy and compare KPIs."""
