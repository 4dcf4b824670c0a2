"""reportgen: turn the choice of a vision backbone into evidence."""

__version__ = "0.1.0"
