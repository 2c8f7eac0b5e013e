"""Generic Modbus building blocks: register codec and data-driven device profiles."""
