"""The kernel: configuration, database, Redis, clock and i18n, imported by every other package."""
