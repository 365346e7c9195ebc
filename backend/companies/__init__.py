"""Companies (IOMAD tenants), the settings catalogue and its resolution, connection checks."""
