"""One module per command group; each stays thin and calls the workflow modules."""
