"""Forecasts of a site: PV (clear sky x measured performance ratio, or a cloud model), load
(day-type profile + recent-error correction), EV sessions, imported series, and their accuracy."""
