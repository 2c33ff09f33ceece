"""Error types. Each subclasses the built-in error a user would expect, so ``except ValueError`` still works."""


class CatlibError(Exception):
    """Base class of catlib's own errors."""


class IncompatibleStateDictError(CatlibError, ValueError):
    """State dicts that cannot be merged together (missing/extra key, shape or dtype mismatch)."""


class NonFiniteError(CatlibError, ValueError):
    """NaN or Inf in an input."""


class UnknownMethodError(CatlibError, KeyError):
    """A merge method name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class HyperparameterError(CatlibError, ValueError):
    """An unknown hyperparameter name or a value out of range."""


class MissingStatisticsError(CatlibError, ValueError):
    """A data-dependent method called without the statistics (or module + exemplars) it needs."""
