package policy

import (
	"time"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/tacerr"
)

// PoolInfo is what the station and approval decisions need to know of a pool.
type PoolInfo struct {
	Name    string
	Product string
	Market  string
	Factory string
}

// StationInfo is what the ownership decision needs to know of a station.
type StationInfo struct {
	ID      string
	Factory string
	Pools   []string // the pools it is authorised for
}

// CheckOwner decides whether a station may act on an existing object (a
// device, an IMEI or a reservation) drawn from pool: yes when the station is
// authorised for that pool or when the pool belongs to the station's factory
// (another line of the same factory may rework a device); otherwise
// not_owner, naming field. The message does not name the object's factory.
func CheckOwner(st StationInfo, pool PoolInfo, field, what string) error {
	for _, p := range st.Pools {
		if p == pool.Name {
			return nil
		}
	}
	if st.Factory != "" && pool.Factory == st.Factory {
		return nil
	}
	return tacerr.Field(tacerr.NotOwner, field, "%s belongs to another factory: station %s acts only on devices and IMEIs of factory %q; an operator can act on it",
		what, st.ID, st.Factory)
}

// ChoosePool decides which pool a station draws from: the named pool if the
// station is authorised for it, otherwise the station's first pool serving
// product. stationPools lists the station's authorised pools in order.
func ChoosePool(station string, stationPools []string, pools map[string]PoolInfo, pool, product string) (PoolInfo, error) {
	if pool != "" {
		for _, p := range stationPools {
			if p == pool {
				info, ok := pools[pool]
				if !ok {
					return PoolInfo{}, tacerr.Field(tacerr.PoolNotFound, "pool", "pool %q does not exist", pool)
				}
				return info, nil
			}
		}
		return PoolInfo{}, tacerr.Field(tacerr.StationNotAuthorized, "pool", "station %s is not authorised for pool %q; an operator can enroll it with that pool", station, pool)
	}
	if product == "" {
		return PoolInfo{}, tacerr.Field(tacerr.InvalidInput, "product", "name a product or a pool")
	}
	for _, p := range stationPools {
		if info, ok := pools[p]; ok && info.Product == product {
			return info, nil
		}
	}
	return PoolInfo{}, tacerr.Field(tacerr.StationNotAuthorized, "product", "station %s has no pool for product %q", station, product)
}

// CheckApproval is the TAC approval gate: the TAC must hold a market approval
// valid at the given time for the pool's target market (devices that did not
// pass the market's conformity process are not authorised there). A pool
// without a target market needs no approval.
func CheckApproval(t catalog.TAC, market string, at time.Time) error {
	if market == "" || t.ApprovedFor(market, at) {
		return nil
	}
	return tacerr.Field(tacerr.TACNotApproved, "pool", "TAC %s has no approval for market %s valid on %s; add the approval to the catalogue",
		t.TACString(), market, at.UTC().Format("2006-01-02"))
}

// IMEICount decides how many IMEIs a device gets: the TAC's SIM slots by
// default, or a requested number no larger than that.
func IMEICount(t catalog.TAC, requested int) (int, error) {
	if requested == 0 {
		return t.IMEIsPerDevice, nil
	}
	if requested < 1 || requested > t.IMEIsPerDevice {
		return 0, tacerr.Field(tacerr.InvalidInput, "imei_count", "must be between 1 and %d (the IMEIs per device of TAC %s), got %d",
			t.IMEIsPerDevice, t.TACString(), requested)
	}
	return requested, nil
}
