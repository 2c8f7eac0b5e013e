"""The site service: devices polled and commanded, plans on a schedule, records kept."""
