"""helpctl: the support engineer's terminal for the Fluid Attacks Help Channel."""

__version__ = "0.1.0"
