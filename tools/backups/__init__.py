"""Backup tools: ``make backup``, ``make snapshots``, ``make restore``, ``make restore-drill`` (see __main__)."""
