package image

import (
	"encoding/json"
	"fmt"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// LayersLabel is the image config label that records which sources made
// the layers herokunix built and checked: a JSON list of layerRecord, in
// layer order, of the layers that may be reused (layerSet.recordable). A
// later build reads it from the previous image herokunix pushed (by its
// pinned digest) to reuse the layers whose sources are unchanged. (Chosen
// over per-layer history because it carries the digest itself and
// survives tools that rewrite history.)
const LayersLabel = "dev.herokunix.layers"

// maxLabel bounds the label read back from a previous image.
const maxLabel = 1 << 20

// layerRecord says what made one layer. Key is <store path>@<narHash> for a
// layer of one store path in closure mode; for a layer of several store
// paths, or one with nix2container path options or a prebuilt tarball, it
// is a kind prefix and a hash of everything that determines the layer's
// content, NAR hashes included.
type layerRecord struct {
	Key    string `json:"key"`
	DiffID string `json:"diffID"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

func record(key string, l v1.Layer) (layerRecord, error) {
	d, err := l.Digest()
	if err != nil {
		return layerRecord{}, err
	}
	diffID, err := l.DiffID()
	if err != nil {
		return layerRecord{}, err
	}
	size, err := l.Size()
	if err != nil {
		return layerRecord{}, err
	}
	return layerRecord{Key: key, DiffID: diffID.String(), Digest: d.String(), Size: size}, nil
}

func recordsLabel(recs []layerRecord) (string, error) {
	b, err := json.Marshal(recs)
	if err != nil {
		return "", fmt.Errorf("encoding layer record: %w", err)
	}
	return string(b), nil
}

// reuseIndex finds, by key, the layers of a previous image that can be used
// again. Anything odd about the previous image (no label, a record that
// disagrees with its manifest or config) only means no reuse.
type reuseIndex struct {
	byKey map[string]*reusedLayer
}

func newReuseIndex(prev v1.Image) *reuseIndex {
	r := &reuseIndex{byKey: map[string]*reusedLayer{}}
	if prev == nil {
		return r
	}
	cf, err := prev.ConfigFile()
	if err != nil || cf == nil {
		return r
	}
	raw := cf.Config.Labels[LayersLabel]
	if raw == "" || len(raw) > maxLabel {
		return r
	}
	var recs []layerRecord
	if err := json.Unmarshal([]byte(raw), &recs); err != nil {
		return r
	}
	m, err := prev.Manifest()
	if err != nil || len(m.Layers) != len(cf.RootFS.DiffIDs) {
		return r
	}
	pos := make(map[v1.Hash]int, len(m.Layers))
	for i, l := range m.Layers {
		pos[l.Digest] = i
	}
	for _, rec := range recs {
		d, err := v1.NewHash(rec.Digest)
		if err != nil {
			continue
		}
		i, ok := pos[d]
		if !ok || cf.RootFS.DiffIDs[i].String() != rec.DiffID {
			continue
		}
		if mt := m.Layers[i].MediaType; mt != types.DockerLayer && mt != types.OCILayer {
			continue
		}
		from, err := prev.LayerByDigest(d)
		if err != nil {
			continue
		}
		r.byKey[rec.Key] = &reusedLayer{from: from, digest: d, diffID: cf.RootFS.DiffIDs[i], size: m.Layers[i].Size}
	}
	return r
}

// lookup returns the previous layer made from key if the registry still has
// its blob (a HEAD request for a remote image), else nil.
func (r *reuseIndex) lookup(key string) *reusedLayer {
	l := r.byKey[key]
	if l == nil {
		return nil
	}
	if ok, err := partial.Exists(l.from); err != nil || !ok {
		return nil
	}
	return l
}

// headConcurrency bounds the HEAD requests made at once to find reusable
// layers (network-bound, unlike building, which is bounded by CPUs).
const headConcurrency = 16

// layerSet is an image's layers as obtainLayers got them, with what says
// which may be recorded for reuse: a layer reused from the trusted previous
// image, or one built from content that matched the NAR hashes claimed for
// it. Nothing else is recorded.
type layerSet struct {
	keys     []string
	layers   []v1.Layer
	reused   []bool
	verified []bool
}

// recordable says whether layer i may be recorded for reuse.
func (s *layerSet) recordable(i int) bool { return s.reused[i] || s.verified[i] }

// buildLayer builds layer i; verified says its content matched the NAR
// hashes claimed for every store path it was made from.
type buildLayer func(i int) (l v1.Layer, verified bool, err error)

// obtainLayers gets each of n layers: from the previous image when it made
// one from the same key and the registry still has it, else from build.
func obtainLayers(keys []string, reuse *reuseIndex, build buildLayer) (*layerSet, error) {
	s := &layerSet{keys: keys, layers: make([]v1.Layer, len(keys)), reused: make([]bool, len(keys)), verified: make([]bool, len(keys))}
	var heads errgroup.Group
	heads.SetLimit(headConcurrency)
	for i, k := range keys {
		heads.Go(func() error {
			if l := reuse.lookup(k); l != nil {
				s.layers[i], s.reused[i] = l, true
			}
			return nil
		})
	}
	heads.Wait()
	var builds errgroup.Group
	builds.SetLimit(runtime.GOMAXPROCS(0))
	for i := range keys {
		if s.reused[i] {
			continue
		}
		builds.Go(func() error {
			l, verified, err := build(i)
			s.layers[i], s.verified[i] = l, verified
			return err
		})
	}
	return s, builds.Wait()
}
