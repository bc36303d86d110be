"""CPU time to energy, CO2 and money, with Elastic Universal Profiling's formula and default settings.

core-hours = samples / frequency / 3600; kWh = core-hours x watts per core / 1000 x PUE;
CO2 = kWh x carbon intensity; cost = core-hours x price per core-hour. Defaults are Elastic's: 7 W per x86
core (2.8 W on arm64), PUE 1.7 (average on-premise data center), 0.000379069 t CO2 per kWh (US East),
$0.0425 per core-hour. Annualized figures scale the selection's rate up to a year, as Elastic shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

SECONDS_PER_YEAR = 365 * 24 * 3600


@dataclass(frozen=True)
class CostModel:
    """Per-core power, data-center overhead, grid carbon intensity and price; all configurable."""

    watts_per_core: float = 7.0
    pue: float = 1.7
    co2_tons_per_kwh: float = 0.000379069
    cost_per_core_hour: float = 0.0425

    def kwh(self, core_seconds: float) -> float:
        """Energy for `core_seconds` of CPU, including the data center's overhead."""
        return core_seconds / 3600.0 * self.watts_per_core / 1000.0 * self.pue

    def co2_kg(self, core_seconds: float) -> float:
        """Kilograms of CO2 emitted for `core_seconds` of CPU."""
        return self.kwh(core_seconds) * self.co2_tons_per_kwh * 1000.0

    def cost(self, core_seconds: float) -> float:
        """Dollars for `core_seconds` of CPU."""
        return core_seconds / 3600.0 * self.cost_per_core_hour

    def annualize(self, value: float, range_seconds: float) -> float:
        """`value` measured over `range_seconds`, scaled to a year at the same rate."""
        return value * SECONDS_PER_YEAR / range_seconds if range_seconds > 0 else 0.0
