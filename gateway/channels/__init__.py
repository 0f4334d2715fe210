"""One self-contained module per channel, each with the same verbs: verify, parse, render, send."""
