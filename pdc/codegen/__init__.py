"""Code generation: renders lowered IR as source text for a target, with a static memory plan."""
