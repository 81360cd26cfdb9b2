"""Cases: the record of one help request, its evidence and its timeline."""
