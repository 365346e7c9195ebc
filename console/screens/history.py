from console.screens.base import ManiScreen


class HistoryScreen(ManiScreen):
    NAV = "history"
