from console.screens.base import ManiScreen


class CompaniesScreen(ManiScreen):
    NAV = "companies"
