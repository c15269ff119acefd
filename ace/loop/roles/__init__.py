"""The Generator, Reflector and Curator: prompts (text files in ``prompts/``), typed outputs, and the calls."""

from ace.loop.roles.calls import (
    PROMPTS,
    cited,
    curate,
    curate_facts,
    generate,
    prompt,
    reflect,
    reflect_facts,
    same_lesson,
    tag_delta,
)
from ace.loop.roles.outputs import (
    MAX_ENUM_IDS,
    BulletTag,
    CuratorOutput,
    FactCuration,
    FactReflection,
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
    "FactCuration",
    "FactReflection",
    "GeneratorOutput",
    "Reflection",
    "cited",
    "curate",
    "curate_facts",
    "curator_output",
    "generate",
    "generator_output",
    "prompt",
    "reflect",
    "reflect_facts",
    "reflection",
    "same_lesson",
    "tag_delta",
]
