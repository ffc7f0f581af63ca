"""The merchant-facing front doors, one subpackage each: they parse,
authenticate and translate; every rule is in ``payments.services``."""
