"""memoracle: proofs."""
