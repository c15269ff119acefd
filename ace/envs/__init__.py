"""Environments the ACE loop can learn in (each behind its own extra): :mod:`ace.envs.textworld`."""
