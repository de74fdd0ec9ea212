"""Counts in sentences: "1 write", "2 writes"."""


def plural(n, noun, nouns=None):
    """f"{n} {noun}" with the noun's plural (nouns, else noun + "s") unless n is 1."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"
