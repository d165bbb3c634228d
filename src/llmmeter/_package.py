"""The package version and the range of the instrumented library we support."""

__version__ = "0.1.0"

#: Requirement strings checked by ``BaseInstrumentor`` before it instruments.
INSTRUMENTED = ("openai >= 1.0, < 4",)
