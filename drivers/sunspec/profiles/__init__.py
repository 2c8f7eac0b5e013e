"""SunSpec profile files: models and points by SunSpec name (see drivers.sunspec.profile_spec)."""
