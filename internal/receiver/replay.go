package receiver

import (
	"sync"
	"time"
)

// deliveries remembers the delivery ids handled within a window, so a
// replayed (or redelivered) request marks nothing a second time.
type deliveries struct {
	window time.Duration
	max    int
	mu     sync.Mutex
	// seen maps an id to when it was claimed; a zero time is a claim
	// still being handled.
	seen map[string]time.Time
}

func newDeliveries(window time.Duration, max int) *deliveries {
	return &deliveries{window: window, max: max, seen: map[string]time.Time{}}
}

// claim is what claiming a delivery id found.
type claim int

const (
	claimed claim = iota
	duplicate
	full
)

// claim holds id until done or release when it is new within the window.
// Of concurrent requests with one id, one claims it. The table is full
// only when more deliveries than max arrived within the window, which the
// rate limits make impossible with the defaults.
func (d *deliveries) claim(id string, now time.Time) claim {
	d.mu.Lock()
	defer d.mu.Unlock()
	if at, ok := d.seen[id]; ok && (at.IsZero() || now.Sub(at) < d.window) {
		return duplicate
	}
	if len(d.seen) >= d.max {
		d.expire(now)
	}
	if len(d.seen) >= d.max {
		// Refusing (the sender retries) is safer than forgetting a live id.
		return full
	}
	d.seen[id] = time.Time{}
	return claimed
}

// done records a claimed id as handled at now.
func (d *deliveries) done(id string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen[id] = now
}

// release forgets a claimed id whose handling failed, so the sender's
// retry is handled.
func (d *deliveries) release(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.seen, id)
}

// expire drops ids older than the window. Called with mu held.
func (d *deliveries) expire(now time.Time) {
	for id, at := range d.seen {
		if !at.IsZero() && now.Sub(at) >= d.window {
			delete(d.seen, id)
		}
	}
}
