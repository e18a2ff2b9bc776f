// Package image turns what a Nix build left in a workspace into container
// images Heroku's registry accepts, and pushes them.
//
// Every input kind (a docker-archive, nix2container's image JSON, or a plain
// closure of store paths) becomes a v1.Image with Docker schema 2 media types
// and the linux/amd64 platform, because Heroku's registry takes nothing else.
// One push path (Push) handles them all.
//
// Layers herokunix makes itself are reproducible: entries sorted by name,
// mtime 1970-01-01T00:00:01Z, uid/gid 0, no user or group names, Nix's
// canonical permissions, PAX headers and gzip at a fixed level with an empty
// gzip header. The same store path therefore gives the same layer digest in
// every process on every machine running the same herokunix binary (the
// deflate output of a different Go release could differ).
//
// The image config records which store paths made each layer, in the label
// LayersLabel. When the next image is built from the previous one, a layer
// whose store paths are unchanged is taken from the registry by digest (after
// a HEAD request shows the registry still has it) and its files are neither
// read nor compressed again.
package image

import (
	"errors"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Platform of every image herokunix makes: Heroku runs nothing else.
const (
	OS           = "linux"
	Architecture = "amd64"
)

// epoch is the creation time of every image and the mtime of every entry in
// a layer herokunix writes, as dockerTools uses.
var epoch = time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC)

// Limits bound what herokunix reads from untrusted input: docker-archives,
// nix2container's prebuilt layer tarballs, and store trees.
type Limits struct {
	// MaxBytes caps the uncompressed bytes read from one input.
	MaxBytes int64
	// MaxEntries caps the tar entries (or files) in one input.
	MaxEntries int
	// MaxLayers caps the layers of one image.
	MaxLayers int
}

// DefaultLimits are 20 GiB, a million entries and 127 layers (Docker's
// overlay limit, which Heroku shares).
func DefaultLimits() Limits {
	return Limits{MaxBytes: 20 << 30, MaxEntries: 1_000_000, MaxLayers: 127}
}

func (l Limits) orDefault() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	if l.MaxLayers <= 0 {
		l.MaxLayers = d.MaxLayers
	}
	return l
}

// budget counts what one input has used of its Limits.
type budget struct {
	lim     Limits
	bytes   int64
	entries int
}

var errTooBig = errors.New("input too large")

func (b *budget) takeBytes(n int64) error {
	b.bytes += n
	if b.bytes > b.lim.MaxBytes {
		return fmt.Errorf("%w: more than %d bytes uncompressed", errTooBig, b.lim.MaxBytes)
	}
	return nil
}

func (b *budget) takeEntry() error {
	b.entries++
	if b.entries > b.lim.MaxEntries {
		return fmt.Errorf("%w: more than %d entries", errTooBig, b.lim.MaxEntries)
	}
	return nil
}

// assemble makes a Docker schema 2, linux/amd64 image from a config and its
// layers. cfg's RootFS is replaced by the layers' diff IDs; history, when
// given, must have one entry per layer.
func assemble(cfg v1.ConfigFile, layers []v1.Layer, history []v1.History) (v1.Image, error) {
	if cfg.Architecture != "" && cfg.Architecture != Architecture || cfg.OS != "" && cfg.OS != OS {
		return nil, fmt.Errorf("image is for %s/%s; Heroku runs only %s/%s", cfg.OS, cfg.Architecture, OS, Architecture)
	}
	if history != nil && len(history) != len(layers) {
		return nil, fmt.Errorf("image has %d layers but %d history entries", len(layers), len(history))
	}
	img := mutate.MediaType(empty.Image, types.DockerManifestSchema2)
	img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	adds := make([]mutate.Addendum, len(layers))
	diffIDs := make([]v1.Hash, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{Layer: l, MediaType: types.DockerLayer}
		d, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		diffIDs[i] = d
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cfg.OS, cfg.Architecture = OS, Architecture
	cfg.RootFS = v1.RootFS{Type: "layers", DiffIDs: diffIDs}
	if history != nil {
		cfg.History = history
	} else if len(cfg.History) == 0 {
		cfg.History = nil
	}
	return mutate.ConfigFile(img, &cfg)
}
