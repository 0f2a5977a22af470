"""magistral-kedro: Mistral AI's Magistral recipe as a reproducible Kedro project."""

__version__ = "0.1.0"
