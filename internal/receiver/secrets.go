package receiver

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// SecretKeys are the keys of the receiver's Secret, one per sender; a
// sender whose key is absent is not served (404).
const (
	SecretKeyGitHub  = "github"
	SecretKeyGitLab  = "gitlab"
	SecretKeyGeneric = "generic"
)

// SecretTTL is how long a read of the receiver's Secret is reused: a
// rotated secret is in effect within it, and a flood of requests reads
// the Secret at most once per TTL.
const SecretTTL = 30 * time.Second

// SecretSource reads the receiver's Secret (name and namespace from the
// manager's flags) straight from the API server, keeping it for SecretTTL.
type SecretSource struct {
	// Reader reads Secrets; the manager's cache holds only their metadata,
	// so this is its uncached API reader.
	Reader client.Reader
	Name   types.NamespacedName

	mu      sync.Mutex
	data    map[string][]byte
	fetched time.Time
}

// Secrets returns the Secret's data.
func (s *SecretSource) Secrets(ctx context.Context, now time.Time) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data != nil && now.Sub(s.fetched) < SecretTTL {
		return s.data, nil
	}
	var sec corev1.Secret
	if err := s.Reader.Get(ctx, s.Name, &sec); err != nil {
		return nil, fmt.Errorf("reading webhook Secret %s: %w", s.Name, err)
	}
	s.data, s.fetched = sec.Data, now
	if s.data == nil {
		s.data = map[string][]byte{}
	}
	return s.data, nil
}
