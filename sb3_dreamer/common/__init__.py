"""Building blocks shared by the Dreamer algorithms."""
