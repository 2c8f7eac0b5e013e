"""Simulated devices: one plant model of a site, shared by the what-if simulation and the
register-level Modbus simulators."""
