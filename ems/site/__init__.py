"""The site the controller runs: its devices read and commanded, over Modbus or in-process."""
