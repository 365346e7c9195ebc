"""The house's foundation: settings, errors, secrets, the field cipher, the OS user, audit, logging."""
