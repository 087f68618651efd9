"""The Sphinx paper's tail-latency experiment in virtual time (see :mod:`.engine`)."""
