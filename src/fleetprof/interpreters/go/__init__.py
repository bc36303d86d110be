"""Go runtime support: a goroutine's pprof labels (Go frames themselves are symbolized from the pclntab,
fleetprof.symbolize.golang)."""
