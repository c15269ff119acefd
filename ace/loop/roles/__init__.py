"""The Generator, Reflector and Curator: prompts (text files in ``prompts/``), typed outputs, and the calls."""

from ace.loop.roles.calls import PROMPTS, cited, curate, generate, prompt, reflect, tag_delta
from ace.loop.roles.outputs import (
    MAX_ENUM_IDS,
    BulletTag,
    CuratorOutput,
    GeneratorOutput,
    Reflection,
    curator_output,
    generator_output,
    reflection,
)

__all__ = [
    "MAX_ENUM_IDS",
    "PROMPTS",
    "BulletTag",
    "CuratorOutput",
    "GeneratorOutput",
    "Reflection",
    "cited",
    "curate",
    "curator_output",
    "generate",
    "generator_output",
    "prompt",
    "reflect",
    "reflection",
    "tag_delta",
]
