from console.screens.base import ManiScreen


class DeadLettersScreen(ManiScreen):
    NAV = "deadletters"
