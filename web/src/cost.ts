// Elastic's CPU-to-energy, CO2 and cost model (same defaults as fleetprof.query.cost.CostModel).

export const COST = { wattsPerCore: 7.0, pue: 1.7, co2TonsPerKwh: 0.000379069, costPerCoreHour: 0.0425 };
export const SECONDS_PER_YEAR = 365 * 86400;

/** Kilograms of CO2 for `coreSeconds` of CPU. */
export function co2Kg(coreSeconds: number): number {
  return ((coreSeconds / 3600) * COST.wattsPerCore * COST.pue * COST.co2TonsPerKwh * 1000) / 1000;
}

/** Dollars for `coreSeconds` of CPU. */
export function costUsd(coreSeconds: number): number {
  return (coreSeconds / 3600) * COST.costPerCoreHour;
}

/** A value measured over `rangeSeconds`, scaled to a year at the same rate. */
export function annualize(value: number, rangeSeconds: number): number {
  return rangeSeconds > 0 ? (value * SECONDS_PER_YEAR) / rangeSeconds : 0;
}
