"""Pulumi ComponentResources of mailstack: thin wiring of the pure config/ model to Docker resources."""
