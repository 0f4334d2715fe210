"""Verifiable ledger: Merkle tree, signed checkpoints, receipt codes, canonical entries."""
