package receiver

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits bound how many requests the receiver looks at: per source address
// and in total. They are checked before the body is read or a signature
// computed, so a flood costs neither.
type Limits struct {
	// PerSource is each client address's rate (requests a second) and burst.
	PerSource rate.Limit
	// PerSourceBurst is each client address's burst.
	PerSourceBurst int
	// Global is the rate over all sources.
	Global rate.Limit
	// GlobalBurst is the burst over all sources.
	GlobalBurst int
}

// DefaultLimits suit a few busy repositories: a push storm from one
// sender is slowed, and the sum stays far below what the API server takes.
var DefaultLimits = Limits{PerSource: 5, PerSourceBurst: 20, Global: 20, GlobalBurst: 100}

// maxSources bounds the per-source table; past it, idle sources (whose
// bucket is full again) are forgotten.
const maxSources = 10000

type limiter struct {
	limits Limits
	global *rate.Limiter
	mu     sync.Mutex
	source map[string]*rate.Limiter
}

func newLimiter(l Limits) *limiter {
	return &limiter{limits: l, global: rate.NewLimiter(l.Global, l.GlobalBurst), source: map[string]*rate.Limiter{}}
}

// allow takes one token from the source's bucket and one from the global
// bucket; it reports false, taking nothing from the global bucket, when
// the source is over its own limit.
func (l *limiter) allow(source string, now time.Time) bool {
	l.mu.Lock()
	lim, ok := l.source[source]
	if !ok {
		if len(l.source) >= maxSources {
			l.forgetIdle(now)
		}
		lim = rate.NewLimiter(l.limits.PerSource, l.limits.PerSourceBurst)
		l.source[source] = lim
	}
	l.mu.Unlock()
	if !lim.AllowN(now, 1) {
		return false
	}
	return l.global.AllowN(now, 1)
}

// forgetIdle drops sources whose bucket has refilled: forgetting them
// loses nothing. Called with mu held.
func (l *limiter) forgetIdle(now time.Time) {
	for k, lim := range l.source {
		if lim.TokensAt(now) >= float64(l.limits.PerSourceBurst) {
			delete(l.source, k)
		}
	}
}
