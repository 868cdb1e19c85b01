// Package schedule decides when an ACME certificate is renewed and keeps the
// renewal times of every managed hostname in a compact, ordered queue.
//
// The policy (RenewAt, Emergency, Backoff) is a set of pure functions of the
// certificate's validity period, the CA's ACME Renewal Information (RFC 9773)
// and a random source; the Queue holds one next-renewal time per hostname in
// about 50 bytes per name and hands out the due ones soonest first.
//
// # Renewal time
//
// With an ARI window the renewal time is a uniformly random instant inside it
// (RFC 9773 §4.2). The window is clamped at the emergency point (1/20 of the
// lifetime left): a window the CA places later than that is not waited for.
// A window in the past yields a time in the past, which means "due now": the
// functions never read the clock, and a queue pops every time at or before
// the now its caller passes, soonest first, at the rate the caller chooses.
//
// Without a window the renewal is centred on the point where 1/3 of the
// validity period is left (1/2 for lifetimes of 10 days or less) and spread
// uniformly over ±1/5 of the lifetime around it. The spread is deliberately
// wide: a fleet whose certificates were all issued on one day renews, in the
// first cycle, at N / (2/5 lifetime) against a long-run mean of
// N / (2/3 lifetime): 1.67× the mean (1.25× for short lifetimes, whose mean
// interval is half the lifetime), and independent draws on every later cycle
// flatten it further. The latest renewal is at 2/15 of the lifetime left
// (12 days of a 90-day certificate; 3/10, 1.8 days, of a 6-day one), well
// ahead of the emergency point, so backoffs of hours still fit.
//
// Deterministic draws: Seeded returns a random source derived from the
// hostname and the certificate's NotBefore. Every node of a fleet, and a node
// after a restart, then computes the same renewal time for the same
// certificate, so rebuilding the queue from stored certificates causes no
// storm of certificates whose fresh draw happens to fall in the past.
package schedule

import (
	"math/rand/v2"
	"time"
)

// Window is an ACME Renewal Information suggested window (RFC 9773): the CA
// asks that the certificate be renewed between Start and End.
type Window struct {
	Start, End time.Time
}

// ShortLifetime is the longest validity period renewed at half of its
// lifetime rather than at two thirds.
const ShortLifetime = 10 * 24 * time.Hour

// EmergencyFraction is the share of the lifetime left at which a renewal is
// an emergency (1/20): the certificate is renewed whatever the ARI window says.
const EmergencyFraction = 20

// Backoff bounds.
const (
	BackoffMin = time.Minute
	BackoffMax = 6 * time.Hour
)

// RenewAt returns when a certificate valid from notBefore to notAfter should
// be renewed. With ari (non-nil, End after Start) it is a uniformly random
// time in [Start, End), with End clamped at the emergency point; a window that
// starts after the emergency point gives the emergency point. Without a
// usable window it is at 1/3 of the lifetime left (1/2 when the lifetime is
// ShortLifetime or less), spread uniformly by ±1/5 of the lifetime.
//
// The result may be in the past (a window the CA moved back, a certificate
// loaded late): that means due now. r supplies the randomness; nil uses the
// package's global source. A certificate whose notAfter is not after
// notBefore is due at notBefore.
func RenewAt(notBefore, notAfter time.Time, ari *Window, r *rand.Rand) time.Time {
	life := notAfter.Sub(notBefore)
	if life <= 0 {
		return notBefore
	}
	emergency := notAfter.Add(-life / EmergencyFraction)
	if ari != nil && ari.End.After(ari.Start) {
		start, end := ari.Start, ari.End
		if !end.Before(emergency) {
			end = emergency
		}
		if !start.Before(end) {
			return emergency
		}
		return start.Add(randDuration(r, end.Sub(start)))
	}
	// Centre: 2/3 of the lifetime elapsed (1/3 left); 1/2 for short ones.
	centre := life - life/3
	if life <= ShortLifetime {
		centre = life / 2
	}
	spread := life / 5 * 2
	return notBefore.Add(centre - spread/2 + randDuration(r, spread))
}

// Emergency reports whether at now at most 1/20 of the certificate's
// lifetime is left (or it has expired, or its validity is empty): it must be
// renewed whatever the ARI window says.
func Emergency(notBefore, notAfter, now time.Time) bool {
	life := notAfter.Sub(notBefore)
	if life <= 0 {
		return true
	}
	left := notAfter.Sub(now)
	return left <= life/EmergencyFraction
}

// Backoff returns how long to wait before retry number attempt (1 for the
// first retry after one failure) of a failed order: a nominal 1 minute doubling
// per attempt up to 6 hours, drawn uniformly from [3/4, 1] of the nominal so
// that names which failed together do not retry together. It is never less
// than 45 s nor more than BackoffMax. attempt < 1 counts as 1. r nil uses the
// global source.
func Backoff(attempt int, r *rand.Rand) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := BackoffMax
	if attempt <= 20 { // 2^19 minutes is far past the cap
		if n := BackoffMin << (attempt - 1); n < BackoffMax {
			d = n
		}
	}
	return d - d/4 + randDuration(r, d/4+1)
}

// Seeded returns a random source determined by name and notBefore, so that
// RenewAt gives the same time for the same certificate on every node and
// after every restart of a fleet. The seed is fixed for the process only
// through name and notBefore: it does not depend on maphash's per-process
// seed.
func Seeded(name string, notBefore time.Time) *rand.Rand {
	return rand.New(rand.NewPCG(Seed(name, notBefore)))
}

// Seed returns the PCG seed Seeded uses, for a caller that reseeds one
// source (rand.PCG.Seed) rather than allocating one per certificate.
func Seed(name string, notBefore time.Time) (uint64, uint64) {
	return fnv64(name), uint64(notBefore.UnixNano())
}

// fnv64 is FNV-1a: stable across processes and machines, unlike maphash.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// randDuration is uniform in [0, d); d <= 0 gives 0.
func randDuration(r *rand.Rand, d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	if r == nil {
		return rand.N(d)
	}
	return time.Duration(r.Int64N(int64(d)))
}
