// Package image turns what a Nix build left in a workspace into container
// images Heroku's registry accepts, and pushes them.
//
// Every input kind (a docker-archive, nix2container's image JSON, or a plain
// closure of store paths) becomes a v1.Image with Docker schema 2 media types
// and the linux/amd64 platform, because Heroku's registry takes nothing else.
// One push path (Push) handles them all.
//
// Every image fits a layer budget (Options.MaxLayers, DefaultLayers unless
// set, never above CeilingLayers, since Heroku fails to boot images of many
// layers): a closure is grouped by planClosure, and a docker-archive or
// nix2container image with more layers has its lowest ones merged.
//
// Layers herokunix makes itself are reproducible: entries sorted by name,
// mtime 1970-01-01T00:00:01Z, uid/gid 0, no user or group names, Nix's
// canonical permissions, PAX headers and gzip at a fixed level with an empty
// gzip header. The same store path therefore gives the same layer digest in
// every process on every machine running the same herokunix binary (the
// deflate output of a different Go release could differ).
//
// The image config records which store paths, with which NAR hashes, made
// each layer, in the label LayersLabel, but only for layers whose content
// the push checked against the NAR hashes the build claims (narCheck). When
// the next image is built from the previous one (the image herokunix pushed
// last, fetched by the digest the controller pinned, never whatever is at
// :latest), a layer whose store paths and NAR hashes are unchanged is taken
// from the registry by digest (after a HEAD request shows the registry still
// has it) and its files are neither read nor compressed again. See
// docs/layers.md for the trust model.
package image

import (
	"errors"
	"fmt"
	"maps"
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

// Options say how images are made from build output; every input kind
// honours every field. The Max fields bound what herokunix reads from
// untrusted input (docker-archives, nix2container's JSON and prebuilt layer
// tarballs, store trees); zero fields take DefaultOptions' values.
type Options struct {
	// MaxBytes caps the uncompressed bytes read from one input (for store
	// trees: one layer's files).
	MaxBytes int64
	// MaxEntries caps the tar entries (or files, or listed paths) in one input.
	MaxEntries int
	// MaxLayers is the layer budget: the most layers one image may have.
	// An input with more is re-layered (closure paths grouped, adjacent
	// layers of an archive or nix2container image merged), never refused
	// for its count. It is lowered to CeilingLayers when above it.
	MaxLayers int
	// TempDir holds compressed layers until they are pushed (default
	// os.TempDir()).
	TempDir string
}

// The layer budget. Heroku reportedly fails to boot images of about 40 layers
// or more (see docs/layers.md), so no image herokunix makes goes above
// CeilingLayers, and DefaultLayers leaves room under it.
const (
	DefaultLayers = 32
	CeilingLayers = 40
)

// DefaultOptions are 20 GiB, a million entries and DefaultLayers.
func DefaultOptions() Options {
	return Options{MaxBytes: 20 << 30, MaxEntries: 1_000_000, MaxLayers: DefaultLayers}
}

func (o Options) orDefault() Options {
	d := DefaultOptions()
	if o.MaxBytes <= 0 {
		o.MaxBytes = d.MaxBytes
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = d.MaxEntries
	}
	if o.MaxLayers <= 0 {
		o.MaxLayers = d.MaxLayers
	}
	o.MaxLayers = min(o.MaxLayers, CeilingLayers)
	return o
}

// Stats say how an image's layers were obtained. A docker-archive's image
// is read as it is and has none.
type Stats struct {
	Layers, Reused int
	BuiltBytes     int64 // compressed bytes of the layers built
}

// budget counts what one input has used of its Limits.
type budget struct {
	lim     Options
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

// finish makes the image of layers that herokunix made or reused (closure
// and nix2container mode): it records in the LayersLabel which key made
// each recordable layer (see layerSet), so the next build can reuse them,
// and counts what was built. The label replaces any the input's own
// config had.
func finish(cfg v1.ConfigFile, set *layerSet, history []v1.History) (v1.Image, Stats, error) {
	var stats Stats
	recs := make([]layerRecord, 0, len(set.layers))
	for i, l := range set.layers {
		rec, err := record(set.keys[i], l)
		if err != nil {
			return nil, stats, err
		}
		if set.recordable(i) {
			recs = append(recs, rec)
		}
		stats.Layers++
		if set.reused[i] {
			stats.Reused++
		} else {
			stats.BuiltBytes += rec.Size
		}
	}
	label, err := recordsLabel(recs)
	if err != nil {
		return nil, stats, err
	}
	labels := make(map[string]string, len(cfg.Config.Labels)+1)
	maps.Copy(labels, cfg.Config.Labels)
	labels[LayersLabel] = label
	cfg.Config.Labels = labels
	img, err := assemble(cfg, set.layers, history)
	return img, stats, err
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
	if len(layers) > CeilingLayers {
		return nil, fmt.Errorf("image has %d layers, more than the ceiling of %d", len(layers), CeilingLayers)
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
