package status

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gatehouse/internal/store"
)

// State the fleet shares beyond the subscribers:
//
//	statusmail/unsub/<sid>                a tombstone: the address (by its
//	                                      hash) unsubscribed, and when
//	statusmail/rate/<hour>/ip-<hash>      subscribe requests from a client
//	statusmail/rate/<hour>/addr-<sid>     address, for an email address,
//	                                      in the hour starting at <hour>
//
// A tombstone keeps an operator's import from silently subscribing again
// someone who unsubscribed; only the person (through the confirmation
// link) or an operator saying so explicitly lifts it. The rate counts
// make status.email.per_ip_per_hour and per_address_per_hour limits of
// the fleet, not of each node; the per-node tables in front of them bound
// how many keys a flood can create.
const (
	keyMailUnsub = MailKeyPrefix + "unsub/"
	keyMailRate  = MailKeyPrefix + "rate/"
)

// tombstone is an unsubscribed address (the key holds its hash).
type tombstone struct {
	At time.Time `json:"at"`
}

// tombstoneOf returns when the address of sid unsubscribed, if it did.
func (e *emailer) tombstoneOf(ctx context.Context, sid string) (time.Time, bool, error) {
	kv, err := e.p.st.Get(ctx, keyMailUnsub+sid)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	var ts tombstone
	json.Unmarshal(kv.Value, &ts)
	return ts.At, true, nil
}

// checkTombstone refuses an operator's subscription of an address that
// unsubscribed, unless resubscribe says the person agreed again.
func (e *emailer) checkTombstone(ctx context.Context, field, addr string, resubscribe bool) error {
	if resubscribe {
		return nil
	}
	at, ok, err := e.tombstoneOf(ctx, subID(addr))
	if err != nil || !ok {
		return err
	}
	return inputErr(field, "%s unsubscribed on %s; subscribe it again only with the person's consent (resubscribe)", addr, at.UTC().Format("2006-01-02 15:04 UTC"))
}

func tombstoneOp(sid string, now time.Time) store.Op {
	b, _ := json.Marshal(tombstone{At: now})
	return store.Put(keyMailUnsub+sid, b)
}

// errRateBusy is a shared rate count that kept changing under us.
var errRateBusy = errors.New("status email: subscribe rate counts keep changing")

// allowShared counts one subscribe request from ip for addr in the
// fleet-wide counts of the current hour and reports whether both stay
// within the limits.
func (e *emailer) allowShared(ctx context.Context, now time.Time, ip, addr string) (bool, error) {
	c := e.conf().cfg
	hour := now.UTC().Truncate(subscribeRateEvery).Unix()
	pre := keyMailRate + strconv.FormatInt(hour, 10) + "/"
	ih := sha256.Sum256([]byte("gatehouse-status-client\x00" + ip))
	keys := [2]string{pre + "ip-" + hex.EncodeToString(ih[:16]), pre + "addr-" + subID(addr)}
	limits := [2]int{c.PerIPPerHour, c.PerAddressPerHour}
	for range 8 {
		var conds []store.Cond
		var ops []store.Op
		for i, k := range keys {
			n := 0
			kv, err := e.p.st.Get(ctx, k)
			switch {
			case errors.Is(err, store.ErrNotFound):
				conds = append(conds, store.Absent(k))
			case err != nil:
				return false, err
			default:
				n, _ = strconv.Atoi(string(kv.Value))
				conds = append(conds, store.Cond{Key: k, ModRev: kv.ModRev})
			}
			if n >= limits[i] {
				return false, nil
			}
			ops = append(ops, store.Put(k, []byte(strconv.Itoa(n+1))))
		}
		_, err := e.p.st.Txn(ctx, conds, ops)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return false, err
		}
	}
	return false, errRateBusy
}

// sweepRates deletes the counts of hours that ended.
func (e *emailer) sweepRates(ctx context.Context, now time.Time) {
	cur := now.UTC().Truncate(subscribeRateEvery).Unix()
	for {
		kvs, _, err := e.p.st.List(ctx, keyMailRate, "", 100)
		if err != nil || len(kvs) == 0 {
			return
		}
		var ops []store.Op
		for _, kv := range kvs {
			h, _, _ := strings.Cut(strings.TrimPrefix(kv.Key, keyMailRate), "/")
			if n, err := strconv.ParseInt(h, 10, 64); err != nil || n < cur {
				ops = append(ops, store.Delete(kv.Key))
			}
		}
		if len(ops) == 0 {
			return // keys sort by hour: the rest is current
		}
		if _, err := e.p.st.Txn(ctx, nil, ops); err != nil {
			e.p.log.Warn("status email: deleting old subscribe rate counts", "err", fmt.Sprint(err))
			return
		}
	}
}
