"""One module per exchange protocol."""
