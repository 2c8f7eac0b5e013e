"""Price and carbon-intensity signals: parsers for real source formats, resampling, persistence."""

from ems.signals.series import Signal, SignalError, resample_to_step

__all__ = ["Signal", "SignalError", "resample_to_step"]
