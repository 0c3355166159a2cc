package runtime

import (
	"testing"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core/replica"
)

// TestDriverConfigRideAlong: consensus.ride_along_ms reaches the shard's
// driver, its 0 ("never") as the driver's -1, and every value the
// configuration accepts is one the driver accepts.
func TestDriverConfigRideAlong(t *testing.T) {
	full := config.Dev(t.TempDir())
	for _, tc := range []struct{ configured, want int }{{config.DefaultRideAlongMs, 20}, {0, -1}, {config.MaxRideAlongMs, 1000}, {5, 5}} {
		full.Consensus.RideAlongMs = tc.configured
		if err := full.Validate(); err != nil {
			t.Fatalf("ride_along_ms %d: %v", tc.configured, err)
		}
		cfg := driverConfig(1, full.Consensus)
		if cfg.RideAlongMs != int64(tc.want) {
			t.Errorf("ride_along_ms %d: the driver gets %d, want %d", tc.configured, cfg.RideAlongMs, tc.want)
		}
		if _, err := replica.New(cfg); err != nil {
			t.Errorf("ride_along_ms %d: the driver refuses it: %v", tc.configured, err)
		}
	}
}
