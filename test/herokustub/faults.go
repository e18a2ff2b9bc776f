package herokustub

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// Fault changes how matching requests are answered, before auth or routing.
type Fault struct {
	// Method and PathPrefix select requests; empty matches all.
	Method     string
	PathPrefix string
	// Count is how many requests the fault affects; 0 means until Clear.
	Count int
	// Latency delays the request (or the fault's answer) by this long, or
	// until the client goes away.
	Latency time.Duration
	// Status answers with this status and Heroku's error body (429 gets the
	// rate_limit body, 5xx an internal error body). 0 with only Latency set
	// lets the request through after the delay.
	Status int
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Drop closes the connection without an answer.
	Drop bool
	// Hang holds the request until the client gives up or Server.Close.
	Hang bool
	// Reached, when set, gets a value (without blocking) each time the
	// fault takes a request, so tests can act once the server has it.
	Reached chan<- struct{}
}

// Faults holds the injected faults; the first matching one applies.
type Faults struct {
	mu     sync.Mutex
	faults []*Fault
}

// Add injects a fault.
func (f *Faults) Add(fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &fault)
}

// FailNext answers the next n requests with status.
func (f *Faults) FailNext(n, status int) { f.Add(Fault{Count: n, Status: status}) }

// RateLimitNext answers the next n requests with 429 rate_limit.
func (f *Faults) RateLimitNext(n int) { f.Add(Fault{Count: n, Status: http.StatusTooManyRequests}) }

// DropNext drops the connection of the next n requests. net/http retries an
// idempotent request once when a reused connection drops, so failing one GET
// may take two.
func (f *Faults) DropNext(n int) { f.Add(Fault{Count: n, Drop: true}) }

// DelayNext delays the next n requests by d.
func (f *Faults) DelayNext(n int, d time.Duration) { f.Add(Fault{Count: n, Latency: d}) }

// HangNext holds the next n requests until the client gives up.
func (f *Faults) HangNext(n int) { f.Add(Fault{Count: n, Hang: true}) }

// Clear removes every fault.
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
}

// match returns the fault for r, spending one of its count.
func (f *Faults) match(r *http.Request) (Fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, ft := range f.faults {
		if ft.Method != "" && ft.Method != r.Method {
			continue
		}
		if ft.PathPrefix != "" && !strings.HasPrefix(r.URL.Path, ft.PathPrefix) {
			continue
		}
		out := *ft
		if ft.Count > 0 {
			ft.Count--
			if ft.Count == 0 {
				f.faults = append(f.faults[:i], f.faults[i+1:]...)
			}
		}
		return out, true
	}
	return Fault{}, false
}

// applyFault runs a matching fault. It reports whether the request was
// answered (or dropped) and must not be handled further.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, writeError func(status int)) (handled bool) {
	ft, ok := s.faults.match(r)
	if !ok {
		return false
	}
	if ft.Reached != nil {
		select {
		case ft.Reached <- struct{}{}:
		default:
		}
	}
	if ft.Hang {
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
		drop(w)
		return true
	}
	if ft.Latency > 0 {
		t := time.NewTimer(ft.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			drop(w)
			return true
		case <-s.closed:
			drop(w)
			return true
		}
	}
	if ft.Drop {
		drop(w)
		return true
	}
	if ft.Status != 0 {
		if ft.RetryAfter != "" {
			w.Header().Set("Retry-After", ft.RetryAfter)
		}
		writeError(ft.Status)
		return true
	}
	return false
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}
