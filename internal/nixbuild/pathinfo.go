package nixbuild

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/herokunix/herokunix/internal/artifact"
)

// ParsePathInfo parses the output of `nix path-info --json` (with or without
// -r) into store paths with their NAR sizes, NAR hashes (in SRI form,
// whichever encoding Nix printed) and references, sorted by path. It accepts both
// formats Nix has used: an array of objects with a "path" field (Nix 2.8 up
// to 2.18) and an object keyed by store path (newer Nix), where a null value
// marks a path that is not valid in the store.
func ParsePathInfo(b []byte) ([]artifact.StorePath, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, errors.New("nix path-info printed nothing")
	}
	type info struct {
		Path       string   `json:"path"`
		NarSize    *int64   `json:"narSize"`
		NarHash    string   `json:"narHash"`
		Valid      *bool    `json:"valid"`
		References []string `json:"references"`
	}
	var entries []info
	switch b[0] {
	case '[':
		if err := json.Unmarshal(b, &entries); err != nil {
			return nil, fmt.Errorf("parsing nix path-info output: %w", err)
		}
	case '{':
		var byPath map[string]*info
		if err := json.Unmarshal(b, &byPath); err != nil {
			return nil, fmt.Errorf("parsing nix path-info output: %w", err)
		}
		for p, in := range byPath {
			if in == nil {
				return nil, fmt.Errorf("nix path-info: %q is not valid in the store", p)
			}
			if in.Path != "" && in.Path != p {
				return nil, fmt.Errorf("nix path-info: entry %q names path %q", p, in.Path)
			}
			in.Path = p
			entries = append(entries, *in)
		}
	default:
		return nil, errors.New("parsing nix path-info output: not a JSON array or object")
	}
	seen := make(map[string]bool, len(entries))
	out := make([]artifact.StorePath, 0, len(entries))
	for _, e := range entries {
		if !artifact.IsStorePath(e.Path) {
			return nil, fmt.Errorf("nix path-info: %q is not a store path", e.Path)
		}
		if e.Valid != nil && !*e.Valid {
			return nil, fmt.Errorf("nix path-info: %q is not valid in the store", e.Path)
		}
		if e.NarSize == nil || *e.NarSize <= 0 {
			return nil, fmt.Errorf("nix path-info: %q has no NAR size", e.Path)
		}
		if seen[e.Path] {
			continue
		}
		seen[e.Path] = true
		for _, r := range e.References {
			if !artifact.IsStorePath(r) {
				return nil, fmt.Errorf("nix path-info: %q references %q, which is not a store path", e.Path, r)
			}
		}
		narHash, err := sriNarHash(e.NarHash)
		if err != nil {
			return nil, fmt.Errorf("nix path-info: %q: %w", e.Path, err)
		}
		var refs []string
		if len(e.References) > 0 {
			refs = slices.Compact(slices.Sorted(slices.Values(e.References)))
		}
		out = append(out, artifact.StorePath{Path: e.Path, NarSize: *e.NarSize, NarHash: narHash, References: refs})
	}
	if len(out) == 0 {
		return nil, errors.New("nix path-info listed no paths")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// sriNarHash spells a NAR hash as Nix printed it (sha256:<base32>, or SRI,
// or base16) in the one form a manifest holds, SRI; "" stays "" (no hash
// said: the push records no layer of that path for reuse).
func sriNarHash(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	parsed, err := nixhash.ParseAny(h, nil)
	if err != nil || parsed.Algo() != nixhash.SHA256 {
		return "", fmt.Errorf("NAR hash %q is not a SHA-256 hash", h)
	}
	return parsed.Format(nixhash.SRI, true), nil
}
