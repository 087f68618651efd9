"""memoracle: memoracle."""
