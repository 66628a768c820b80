"""Building blocks of ``tools.verify`` (outputs, SMTP/IMAP clients, probes, webmail, results)."""
