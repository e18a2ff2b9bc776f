package controllers

import (
	"context"
	"crypto/sha256"
	"sync"

	"github.com/herokunix/herokunix/internal/heroku"
)

// HerokuAPI is the part of the Heroku client the reconciler uses.
type HerokuAPI interface {
	App(ctx context.Context, app string) (*heroku.App, error)
	ReleaseImages(ctx context.Context, app string, images map[string]string) (*heroku.Release, heroku.ReleaseOutcome, error)
	Release(ctx context.Context, app, id string) (*heroku.Release, error)
	ReleasesSince(ctx context.Context, app string, version, max int) ([]*heroku.Release, error)
	Formation(ctx context.Context, app string) ([]heroku.Formation, error)
	ScaleFormation(ctx context.Context, app string, updates []heroku.Formation) error
}

// HerokuClients hands out one client per API key. The rate-limit budget is
// per Heroku account, so every resource that uses a key shares its client
// (and its limiter).
type HerokuClients struct {
	// New makes a client for a key.
	New func(apiKey string) (HerokuAPI, error)

	mu      sync.Mutex
	clients map[[32]byte]HerokuAPI
}

// For returns the client for apiKey, making it on first use. The map is
// keyed by the key's hash so the key itself is not kept twice.
func (h *HerokuClients) For(apiKey string) (HerokuAPI, error) {
	id := sha256.Sum256([]byte(apiKey))
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.clients[id]; ok {
		return c, nil
	}
	c, err := h.New(apiKey)
	if err != nil {
		return nil, err
	}
	if h.clients == nil {
		h.clients = map[[32]byte]HerokuAPI{}
	}
	h.clients[id] = c
	return c, nil
}
