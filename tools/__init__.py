"""Command-line helpers of mailstack: up, verify, bench, qr."""
