from console.screens.base import ManiScreen


class BulkScreen(ManiScreen):
    NAV = "bulk"
