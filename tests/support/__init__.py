"""Helpers the tests share: the only modules under tests/ that another module may import."""
