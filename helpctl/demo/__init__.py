"""Sample data for `helpctl demo`: the client e-mail that opens the KiwiCorp case."""
