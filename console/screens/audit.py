from console.screens.base import ManiScreen


class AuditScreen(ManiScreen):
    NAV = "audit"
