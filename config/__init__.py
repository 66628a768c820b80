"""Pure Python model, validation and renderers of mailstack (no Pulumi import)."""
