package controllers

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/herokunix/herokunix/internal/heroku"
)

// HerokuAPI is the part of the Heroku client the reconciler uses.
type HerokuAPI interface {
	App(ctx context.Context, app string) (*heroku.App, error)
	CurrentRelease(ctx context.Context, app string) (*heroku.Release, error)
	SendImages(ctx context.Context, app string, images map[string]string) error
	Release(ctx context.Context, app, id string) (*heroku.Release, error)
	ReleasesAfter(ctx context.Context, app string, version int) ([]*heroku.Release, error)
	RemoveProcessType(ctx context.Context, app, processType string) error
	Formation(ctx context.Context, app string) ([]heroku.Formation, error)
	ScaleFormation(ctx context.Context, app string, updates []heroku.Formation) error
	ConfigVars(ctx context.Context, app string) (map[string]string, error)
	UpdateConfigVars(ctx context.Context, app string, vars map[string]*string) error
	Dynos(ctx context.Context, app string) ([]heroku.Dyno, error)
	ReleaseOutput(ctx context.Context, streamURL string) (string, error)
}

// HerokuClients hands out one client per API key. The rate-limit budget is
// per Heroku account, so every resource that uses a key shares its client
// (and its limiter). A client goes when no resource uses its key any more:
// when the last one's Secret changes to another key (a rotated, perhaps
// revoked key), when the last one is deleted (Forget), or when none asked
// for it for IdleAfter.
type HerokuClients struct {
	// New makes a client for a key.
	New func(apiKey string) (HerokuAPI, error)
	// IdleAfter is how long a client no resource asked for is kept
	// (default 2h: longer than the intervals resources are usually
	// reconciled at, so a key in use keeps its limiter).
	IdleAfter time.Duration

	mu      sync.Mutex
	clients map[keyID]*herokuClient
	// users maps a resource (by UID) to the key it last used.
	users map[types.UID]keyID
}

// keyID is the hash of a key, so the key itself is not kept twice.
type keyID [32]byte

type herokuClient struct {
	api      HerokuAPI
	lastUsed time.Time
}

const defaultClientIdle = 2 * time.Hour

// For returns the client for apiKey on behalf of the resource user at now,
// making it on first use.
func (h *HerokuClients) For(user types.UID, apiKey string, now time.Time) (HerokuAPI, error) {
	id := keyID(sha256.Sum256([]byte(apiKey)))
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients == nil {
		h.clients, h.users = map[keyID]*herokuClient{}, map[types.UID]keyID{}
	}
	if old, ok := h.users[user]; ok && old != id {
		delete(h.users, user)
		h.dropIfUnused(old)
	}
	h.dropIdle(now)
	c, ok := h.clients[id]
	if !ok {
		api, err := h.New(apiKey)
		if err != nil {
			return nil, err
		}
		c = &herokuClient{api: api}
		h.clients[id] = c
	}
	c.lastUsed = now
	h.users[user] = id
	return c.api, nil
}

// Forget is told a resource is gone: its key's client goes when no other
// resource uses it.
func (h *HerokuClients) Forget(user types.UID) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, ok := h.users[user]; ok {
		delete(h.users, user)
		h.dropIfUnused(id)
	}
}

func (h *HerokuClients) dropIfUnused(id keyID) {
	for _, used := range h.users {
		if used == id {
			return
		}
	}
	delete(h.clients, id)
}

func (h *HerokuClients) dropIdle(now time.Time) {
	idle := h.IdleAfter
	if idle <= 0 {
		idle = defaultClientIdle
	}
	for id, c := range h.clients {
		if now.Sub(c.lastUsed) < idle {
			continue
		}
		delete(h.clients, id)
		for user, used := range h.users {
			if used == id {
				delete(h.users, user)
			}
		}
	}
}

// cached is how many clients are kept.
func (h *HerokuClients) cached() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// secretKeys remembers the API key read from each Secret at its version,
// so that a pass reads a Secret from the API server only when it changed.
type secretKeys struct {
	mu   sync.Mutex
	read map[types.NamespacedName]secretKey
}

type secretKey struct {
	version, name, key string
}

func (s *secretKeys) lookup(secret types.NamespacedName, version, name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.read[secret]
	if !ok || version == "" || k.version != version || k.name != name {
		return "", false
	}
	return k.key, true
}

func (s *secretKeys) remember(secret types.NamespacedName, version, name, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.read == nil {
		s.read = map[types.NamespacedName]secretKey{}
	}
	s.read[secret] = secretKey{version: version, name: name, key: key}
}

func (s *secretKeys) forget(secret types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.read, secret)
}
