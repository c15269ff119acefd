"""ACE: Agentic Context Engineering. Playbooks that evolve by small, versioned deltas."""

from ace.playbook import AceError, Bullet, Delta, DeltaError, Playbook, Source, apply, render

__version__ = "0.1.0"
__all__ = ["AceError", "Bullet", "Delta", "DeltaError", "Playbook", "Source", "__version__", "apply", "render"]
