package controllers

import (
	"testing"
	"time"
)

// countingClients makes a client per call to New and counts them.
func countingClients(made *int) *HerokuClients {
	return &HerokuClients{IdleAfter: time.Hour, New: func(string) (HerokuAPI, error) {
		*made++
		return newFakeHeroku(), nil
	}}
}

func TestHerokuClientsDropReplacedKeys(t *testing.T) {
	made := 0
	h := countingClients(&made)
	now := testTime
	if _, err := h.For("shop", "old-key", now); err != nil {
		t.Fatal(err)
	}
	if _, err := h.For("shop", "new-key", now); err != nil { // the Secret was rotated
		t.Fatal(err)
	}
	if n := h.cached(); n != 1 {
		t.Errorf("%d clients cached after a key was replaced, want 1 (the old key's client goes)", n)
	}
	_, _ = h.For("cart", "old-key", now)
	if made != 3 {
		t.Errorf("made %d clients; the replaced key's client should have been made again", made)
	}

	// A key another resource still uses stays.
	_, _ = h.For("shop", "newest-key", now)
	_, _ = h.For("cart", "old-key", now)
	if made != 4 {
		t.Errorf("made %d clients, want 4: cart's key stays while cart uses it", made)
	}

	// A deleted resource's key goes with it.
	h.Forget("cart")
	if n := h.cached(); n != 1 {
		t.Errorf("%d clients cached after the last user of a key was deleted, want 1", n)
	}
}

func TestHerokuClientsDropIdleKeys(t *testing.T) {
	made := 0
	h := countingClients(&made)
	_, _ = h.For("shop", "key-a", testTime)
	_, _ = h.For("cart", "key-b", testTime)
	_, _ = h.For("cart", "key-b", testTime.Add(50*time.Minute))
	_, _ = h.For("cart", "key-b", testTime.Add(90*time.Minute)) // key-a unused for 90 minutes
	if n := h.cached(); n != 1 {
		t.Errorf("%d clients cached, want 1: key-a went unused for longer than IdleAfter", n)
	}
	if made != 2 {
		t.Errorf("made %d clients; a key in use must keep its client (and limiter)", made)
	}
	_, _ = h.For("shop", "key-a", testTime.Add(91*time.Minute))
	if made != 3 {
		t.Errorf("made %d clients; an evicted key gets a new client when used again", made)
	}
}
