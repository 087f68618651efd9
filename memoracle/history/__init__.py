"""Checking histories of concurrent objects: memoracle's own queue histories and those of
other tools (Jepsen, Porcupine), with the fastest exact checker that applies, the generic
search under a budget for the rest, and a timeline a person can read."""
