"""Turn a site config into per-step input series (prices, carbon, limits, PV, load, EV, H2)."""

from ems.inputs.site_inputs import EvSessionEvent, SiteInputs, build_inputs

__all__ = ["EvSessionEvent", "SiteInputs", "build_inputs"]
