"""Executable reference specifications: what is correct.

Standard library only; nothing here imports from the rest of the project.
"""
