"""The systems and the emulated machine they run on."""
