package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/herokunix/herokunix/internal/artifact"
)

// closureWorkspace writes a workspace with n store paths and a closure-mode
// manifest for process "web"; path i holds data made from gen.
func closureWorkspace(t *testing.T, n int, gen map[int]string) (string, []artifact.StorePath) {
	t.Helper()
	ws := t.TempDir()
	root := filepath.Join(ws, artifact.StoreRoot)
	var closure []artifact.StorePath
	for i := range n {
		sp := storePathFor(100*i+len(gen[i]), "pkg"+string(rune('a'+i)))
		files := map[string]file{"data": {body: strings.Repeat(gen[i]+sp, 200)}}
		if i == 0 {
			files["bin/app"] = file{body: "app", mode: 0o755}
		}
		makeStorePath(t, root, sp, files)
		closure = append(closure, artifact.StorePath{Path: sp, NarSize: int64(1000 - i), NarHash: narHashOf(t, root, sp)})
	}
	writeManifest(t, ws, artifact.ProcessOutput{Kind: artifact.KindClosure, OutPath: closure[0].Path, Closure: closure})
	return ws, closure
}

// pinned is what the controller hands the next push: the manifest digest
// of each image a push made (status.images).
func pinned(res *artifact.Result) map[string]string {
	m := map[string]string{}
	for pt, img := range res.Images {
		m[pt] = img.Digest
	}
	return m
}

func writeManifest(t *testing.T, ws string, p artifact.ProcessOutput) {
	t.Helper()
	if err := artifact.WriteManifest(ws, &artifact.Manifest{LockedFlake: "path:/x?narHash=sha256-x", Revision: "abc", Processes: map[string]artifact.ProcessOutput{"web": p}}); err != nil {
		t.Fatal(err)
	}
}

func TestSecondPushUploadsOnlyTheChangedStorePathAndDoesNotReadTheOthers(t *testing.T) {
	r := newTestRegistry(t)
	ctx := context.Background()
	ws1, closure1 := closureWorkspace(t, 4, map[int]string{})
	res1, err := PushWorkspace(ctx, ws1, r.host, "my-app", PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res1.LockedFlake == "" || res1.Revision != "abc" {
		t.Errorf("result %+v", res1)
	}
	if got := len(r.uploads()); got != 5 {
		t.Errorf("first push uploaded %d blobs, want 4 layers and a config", got)
	}

	// The next build changes store path 2 (a new hash, as in Nix). The
	// unchanged store paths are removed from the workspace: the push must
	// not need their files.
	ws2, closure2 := closureWorkspace(t, 4, map[int]string{2: "changed"})
	for i := range closure2 {
		if i != 2 {
			if closure2[i].Path != closure1[i].Path {
				t.Fatalf("store path %d changed", i)
			}
			if err := os.RemoveAll(filepath.Join(ws2, artifact.StoreRoot, closure2[i].Path)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Without its bin/ the output needs an explicit command.
	writeManifest(t, ws2, artifact.ProcessOutput{Kind: artifact.KindClosure, OutPath: closure2[0].Path, Closure: closure2, Command: []string{"bin/app"}})
	r.reset()
	var progress bytes.Buffer
	res2, err := PushWorkspace(ctx, ws2, r.host, "my-app", PushOptions{Progress: &progress, ReuseFrom: pinned(res1)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "4 layers, 3 reused") {
		t.Errorf("progress %q", progress.String())
	}
	img, err := remote.Image(mustRef(t, r.host+"/my-app/web:latest"))
	if err != nil {
		t.Fatal(err)
	}
	checkHerokuImage(t, img)
	if id, _ := img.ConfigName(); id.String() != res2.Images["web"].ImageID {
		t.Errorf("registry has %s, push reported %s", id, res2.Images["web"].ImageID)
	}
	m, _ := img.Manifest()
	// Layers, bottom first: b, c, d by size, the output a on top.
	changed := m.Layers[1].Digest.String()
	if got, want := r.uploads(), []string{changed, res2.Images["web"].ImageID}; !sameSet(got, want) {
		t.Errorf("second push uploaded %q, want only the changed layer and the config %q", got, want)
	}

	// The changed layer is the one a fresh build of the same tree makes.
	fresh, _, err := FromClosure(filepath.Join(ws2, artifact.StoreRoot), closure2[2:3], closure2[2].Path, []string{"x"}, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fm, _ := fresh.Manifest()
	if fm.Layers[0].Digest.String() != changed {
		t.Errorf("changed layer %s, a fresh build makes %s", changed, fm.Layers[0].Digest)
	}
}

func TestALayerTheRegistryLostIsBuiltAgain(t *testing.T) {
	r := newTestRegistry(t)
	ws, closure := closureWorkspace(t, 3, map[int]string{})
	root := filepath.Join(ws, artifact.StoreRoot)
	img, _, err := FromClosure(root, closure, closure[0].Path, nil, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Push(context.Background(), map[string]v1.Image{"web": img}, r.host, "my-app"); err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	r.hideBlob(m.Layers[1].Digest)

	prev, err := remote.Image(mustRef(t, r.host+"/my-app/web:latest"))
	if err != nil {
		t.Fatal(err)
	}
	next, stats, err := FromClosure(root, closure, closure[0].Path, nil, Options{}, prev)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Reused != 2 {
		t.Errorf("reused %d layers, want 2 (the registry lost one)", stats.Reused)
	}
	if a, b := imageFingerprint(t, img), imageFingerprint(t, next); a != b {
		t.Errorf("rebuilt image differs: %s vs %s", a, b)
	}
}

func TestPushWorkspaceWithoutAPreviousImageAndSeveralProcessTypes(t *testing.T) {
	r := newTestRegistry(t)
	ws, closure := closureWorkspace(t, 2, map[int]string{})
	p := artifact.ProcessOutput{Kind: artifact.KindClosure, OutPath: closure[0].Path, Closure: closure}
	w := p
	w.Command = []string{"bin/app", "worker"}
	if err := artifact.WriteManifest(ws, &artifact.Manifest{LockedFlake: "x", Processes: map[string]artifact.ProcessOutput{"web": p, "worker": w}}); err != nil {
		t.Fatal(err)
	}
	res, err := PushWorkspace(context.Background(), ws, r.host, "my-app", PushOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 2 || res.Images["web"].ImageID == res.Images["worker"].ImageID {
		t.Errorf("images %+v", res.Images)
	}
	if _, err := res.Encode(); err != nil {
		t.Error(err)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Every input kind honours the push's limits: a closure over them is refused
// like an archive over them would be.
func TestPushWorkspaceHoldsClosuresToTheLimits(t *testing.T) {
	r := newTestRegistry(t)
	for name, opts := range map[string]Options{
		"bytes":   {MaxBytes: 100},
		"entries": {MaxEntries: 1},
	} {
		t.Run(name, func(t *testing.T) {
			ws, _ := closureWorkspace(t, 2, map[int]string{})
			_, err := PushWorkspace(t.Context(), ws, r.host, "limits-app", PushOptions{Options: opts})
			if !errors.Is(err, errTooBig) {
				t.Fatalf("error %v, want one saying the input is too large", err)
			}
		})
	}
	t.Run("layers", func(t *testing.T) {
		ws, _ := closureWorkspace(t, 4, map[int]string{})
		res, err := PushWorkspace(t.Context(), ws, r.host, "layers-app", PushOptions{Options: Options{MaxLayers: 2}})
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(mustRef(t, r.host+"/layers-app/web:latest"))
		if err != nil {
			t.Fatal(err)
		}
		if layers, _ := img.Layers(); len(layers) != 2 {
			t.Errorf("image has %d layers, want MaxLayers = 2 (result %+v)", len(layers), res)
		}
	})
}
