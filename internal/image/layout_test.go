package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/herokunix/herokunix/internal/artifact"
)

// layeredClosure is a synthetic closure of n store paths shaped like a real
// one: path 0 is the app (the output), paths 1..5 are its private
// dependencies (only the app uses them), and the rest are libraries that
// depend on deeper ones, with a few at the bottom everything needs.
// appSalt changes the app's hash and content, as a rebuild of the app does.
func layeredClosure(n int, appSalt int) []artifact.StorePath {
	paths := make([]string, n)
	paths[0] = storePathFor(100_000+appSalt, "app")
	for i := 1; i < n; i++ {
		paths[i] = storePathFor(i, fmt.Sprintf("dep%d", i))
	}
	closure := make([]artifact.StorePath, n)
	for i := range n {
		var refs []string
		switch {
		case i == 0:
			refs = slices.Clone(paths[1:min(n, 10)])
		case i <= 4:
			refs = []string{paths[min(n-1, 5+i)]}
		default:
			// Libraries depend on a deeper one and on the three at the
			// bottom (a libc, a runtime, a locale set).
			for _, j := range []int{i + 1 + i%7, n - 1, n - 2, n - 3} {
				if j > i && j < n {
					refs = append(refs, paths[j])
				}
			}
		}
		closure[i] = artifact.StorePath{Path: paths[i], NarSize: int64(1000 + (i*7919)%5000), References: refs}
	}
	return closure
}

func writeClosure(t *testing.T, root string, closure []artifact.StorePath) {
	t.Helper()
	for i, sp := range closure {
		files := map[string]file{"data": {body: strings.Repeat(sp.Path, 20)}}
		if i == 0 {
			files["bin/app"] = file{body: "app " + sp.Path, mode: 0o755}
		}
		makeStorePath(t, root, sp.Path, files)
	}
}

func TestPlanClosureKeepsTheAppOnTopAndTheSharedPathsBelow(t *testing.T) {
	closure := layeredClosure(120, 0)
	plan := planClosure(closure, closure[0].Path, DefaultLayers)
	if len(plan) != DefaultLayers {
		t.Fatalf("%d layers, want %d", len(plan), DefaultLayers)
	}
	if !slices.Equal(plan[len(plan)-1], []string{closure[0].Path}) {
		t.Errorf("top layer %q, want the output alone", plan[len(plan)-1])
	}
	// The three paths everything needs are at the bottom, one layer each.
	for i := range 3 {
		if len(plan[i]) != 1 || !slices.Contains([]string{closure[117].Path, closure[118].Path, closure[119].Path}, plan[i][0]) {
			t.Errorf("layer %d holds %q, want one of the most depended-on paths", i, plan[i])
		}
	}
	// The app's private dependencies share the layer under it.
	if want := []string{closure[1].Path, closure[2].Path, closure[3].Path, closure[4].Path, closure[5].Path}; !slices.Equal(plan[len(plan)-2], want) {
		t.Errorf("layer under the app holds %q, want its private dependencies %q", plan[len(plan)-2], want)
	}
	seen := map[string]bool{}
	for _, grp := range plan {
		for _, p := range grp {
			if seen[p] {
				t.Errorf("%s is in two layers", p)
			}
			seen[p] = true
		}
	}
	if len(seen) != len(closure) {
		t.Errorf("plan holds %d paths, closure %d", len(seen), len(closure))
	}

	// A rebuilt app changes the top layer only.
	rebuilt := layeredClosure(120, 1)
	plan2 := planClosure(rebuilt, rebuilt[0].Path, DefaultLayers)
	for i := range len(plan) - 1 {
		if !slices.Equal(plan[i], plan2[i]) {
			t.Errorf("layer %d changed with the app: %q, then %q", i, plan[i], plan2[i])
		}
	}

	for _, budget := range []int{1, 2, 3, 40} {
		if got := len(planClosure(closure, closure[0].Path, budget)); got > budget || got == 0 {
			t.Errorf("budget %d: %d layers", budget, got)
		}
	}
}

func TestDependentsIgnoresCyclesAndOutsideReferences(t *testing.T) {
	a, b, c := storePathFor(1, "a"), storePathFor(2, "b"), storePathFor(3, "c")
	got := dependents([]artifact.StorePath{
		{Path: a, References: []string{a, b, storePathFor(9, "outside")}},
		{Path: b, References: []string{c}},
		{Path: c, References: []string{a}}, // a cycle no store can hold
	})
	if got[c] != 2 || got[b] < 1 {
		t.Errorf("dependents %v", got)
	}
}

// A closure of more paths than the budget is pushed in DefaultLayers
// layers; the same closure pushed again uploads nothing, and a rebuilt app
// uploads one layer and the config.
func TestClosureOfManyPathsFitsTheBudgetAndARebuiltAppUploadsOneLayer(t *testing.T) {
	r := newTestRegistry(t)
	ctx := context.Background()
	push := func(closure []artifact.StorePath) *artifact.Result {
		t.Helper()
		ws := t.TempDir()
		writeClosure(t, filepath.Join(ws, artifact.StoreRoot), closure)
		writeManifest(t, ws, artifact.ProcessOutput{Kind: artifact.KindClosure, OutPath: closure[0].Path, Closure: closure})
		res, err := PushWorkspace(ctx, ws, r.host, "big-app", PushOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := push(layeredClosure(120, 0))
	img, err := remote.Image(mustRef(t, r.host+"/big-app/web:latest"))
	if err != nil {
		t.Fatal(err)
	}
	if layers, _ := img.Layers(); len(layers) != DefaultLayers {
		t.Fatalf("%d layers, want %d", len(layers), DefaultLayers)
	}
	if got := len(r.uploads()); got != DefaultLayers+1 {
		t.Errorf("first push uploaded %d blobs, want every layer and the config", got)
	}

	r.reset()
	again := push(layeredClosure(120, 0))
	if again.Images["web"] != first.Images["web"] {
		t.Errorf("the same closure gave %+v, then %+v", first.Images["web"], again.Images["web"])
	}
	if got := r.uploads(); len(got) != 0 {
		t.Errorf("pushing the same closure again uploaded %q", got)
	}

	r.reset()
	rebuilt := push(layeredClosure(120, 1))
	if got, want := len(r.uploads()), 2; got != want {
		t.Errorf("a rebuilt app uploaded %d blobs %q, want one layer and the config", got, r.uploads())
	}
	if !slices.Contains(r.uploads(), rebuilt.Images["web"].ImageID) {
		t.Errorf("the config %s was not among the uploads %q", rebuilt.Images["web"].ImageID, r.uploads())
	}
}

const layoutReproEnv = "HEROKUNIX_TEST_LAYOUT_REPRO_ROOT"

// TestLayeredClosureIsReproducibleAcrossProcesses builds a closure of more
// paths than the budget in this process and in a child process (this test
// binary run again) and compares image IDs and layer digests: the grouping
// is part of the reproducibility contract.
func TestLayeredClosureIsReproducibleAcrossProcesses(t *testing.T) {
	closure := layeredClosure(150, 0)
	if root := os.Getenv(layoutReproEnv); root != "" {
		img, _, err := FromClosure(root, closure, closure[0].Path, nil, Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("RESULT", imageFingerprint(t, img))
		return
	}
	root := t.TempDir()
	writeClosure(t, root, closure)
	img, _, err := FromClosure(root, closure, closure[0].Path, nil, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if layers, _ := img.Layers(); len(layers) != DefaultLayers {
		t.Fatalf("%d layers, want %d", len(layers), DefaultLayers)
	}
	want := imageFingerprint(t, img)

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), layoutReproEnv+"="+root)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	var got string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			got = s
		}
	}
	if got != want {
		t.Errorf("child process made %q, this one %q", got, want)
	}
}

// multiLayerArchive is a docker-archive of n layers: layer i adds
// layer/<i> and rewrites shared; layer 1 adds gone/x, which layer 2 whites
// out; top is the content of the top layer's file.
func multiLayerArchive(t *testing.T, n int, top string) []byte {
	t.Helper()
	var entries []tarEntry
	var diffIDs []v1.Hash
	var names []string
	var history []v1.History
	for i := range n {
		files := []tarEntry{reg("layer/"+fmt.Sprint(i), fmt.Sprint("layer ", i)), reg("shared", fmt.Sprint("from ", i))}
		switch i {
		case 1:
			files = append(files, reg("gone/x", "x"), reg("gone/y", "y"))
		case 2:
			files = append(files, reg("gone/.wh.x", ""))
		case n - 1:
			files = append(files, reg("top", top))
		}
		layer := tarBytes(t, append([]tarEntry{{hdr: tar.Header{Name: "layer/", Typeflag: tar.TypeDir, Mode: 0o755}}}, files...)...)
		d, _, _ := v1.SHA256(bytes.NewReader(layer))
		diffIDs = append(diffIDs, d)
		name := fmt.Sprintf("%d/layer.tar", i)
		names = append(names, name)
		entries = append(entries, reg(name, string(layer)))
		history = append(history, v1.History{CreatedBy: fmt.Sprint("layer ", i)}, v1.History{CreatedBy: "env", EmptyLayer: true})
	}
	cfg, _ := json.Marshal(v1.ConfigFile{Architecture: "amd64", OS: "linux", History: history, RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs}})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "Layers": names}})
	return tarBytes(t, append([]tarEntry{reg("manifest.json", string(manifest)), reg("config.json", string(cfg))}, entries...)...)
}

func TestArchiveOf100LayersIsMergedIntoTheBudget(t *testing.T) {
	read := func(top string) v1.Image {
		t.Helper()
		a := multiLayerArchive(t, 100, top)
		img, err := readDockerArchive(bytes.NewReader(a), int64(len(a)), withTemp(Options{}, t))
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	img := read("v1")
	checkHerokuImage(t, img)
	layers, _ := img.Layers()
	if len(layers) != DefaultLayers {
		t.Fatalf("%d layers, want %d", len(layers), DefaultLayers)
	}
	cf, _ := img.ConfigFile()
	nonEmpty := 0
	for _, h := range cf.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	if nonEmpty != len(layers) || !strings.Contains(cf.History[len(cf.History)-2*(DefaultLayers-1)-2].CreatedBy, "69 layers merged") {
		t.Errorf("history does not match the merged layers: %+v", cf.History)
	}

	// The lowest 69 layers, stacked: the whiteout took gone/x and is
	// kept for what lies below; the last shared wins.
	names, entries := layerEntries(t, layers[0])
	for i := range 69 {
		if !slices.Contains(names, fmt.Sprint("layer/", i)) {
			t.Errorf("merged layer lacks layer/%d", i)
		}
	}
	if slices.Contains(names, "layer/69") || slices.Contains(names, "gone/x") || !slices.Contains(names, "gone/y") || !slices.Contains(names, "gone/.wh.x") {
		t.Errorf("merged layer holds %q", names)
	}
	if e := entries["shared"]; e.body != "from 68" {
		t.Errorf("shared in the merged layer: %+v, want the 69th layer's", e)
	}
	if names[0] != "layer/" {
		t.Errorf("merged layer starts with %q, want the directory before its contents", names[0])
	}
	if n := strings.Count(strings.Join(names, "\n"), "shared"); n != 1 {
		t.Errorf("shared is in the merged layer %d times", n)
	}

	// Reading it again gives the same image; a change of the top layer
	// leaves every other layer as it was.
	again, _ := read("v1").Digest()
	if d, _ := img.Digest(); d != again {
		t.Errorf("the same archive gave %s, then %s", d, again)
	}
	changed, _ := read("v2").Layers()
	for i := range layers {
		d1, _ := layers[i].Digest()
		d2, _ := changed[i].Digest()
		if (d1 == d2) != (i != len(layers)-1) {
			t.Errorf("layer %d: %s, then %s after the top layer changed", i, d1, d2)
		}
	}
}

func TestSquashHonoursOpaqueDirectoriesAndReplacedDirectories(t *testing.T) {
	layer := func(entries ...tarEntry) v1.Layer {
		l, err := spool(t.TempDir(), func(w io.Writer) error {
			_, err := w.Write(tarBytes(t, entries...))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	dir := func(name string) tarEntry {
		return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
	}
	got, err := squash([]v1.Layer{
		layer(dir("d/"), reg("d/a", "a"), dir("e/"), reg("e/b", "b")),
		layer(reg("d/.wh..wh..opq", ""), reg("d/c", "c"), reg("e", "now a file")),
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	names, _ := layerEntries(t, got)
	if want := []string{"d/", "d/.wh..wh..opq", "d/c", "e"}; !slices.Equal(names, want) {
		t.Errorf("squashed layer holds %q, want %q", names, want)
	}
}

func TestNix2ContainerOfManyLayersIsMergedAndReused(t *testing.T) {
	r := newTestRegistry(t)
	const n = 36
	push := func(topSalt int) *artifact.Result {
		t.Helper()
		ws := t.TempDir()
		root := filepath.Join(ws, artifact.StoreRoot)
		var layers []string
		for i := range n {
			sp := storePathFor(500+i, fmt.Sprint("p", i))
			if i == n-1 {
				sp = storePathFor(900+topSalt, "top")
			}
			makeStorePath(t, root, sp, map[string]file{"f": {body: sp}})
			layers = append(layers, `{"digest":"","size":0,"diff_ids":"","paths":[{"path":"`+sp+`"}]}`)
		}
		doc := `{"version":1,"image-config":{"Entrypoint":["/bin/x"]},"arch":"amd64","layers":[` + strings.Join(layers, ",") + `]}`
		if err := os.WriteFile(filepath.Join(ws, "image.json"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		writeManifest(t, ws, artifact.ProcessOutput{Kind: artifact.KindNix2Container, Nix2ContainerJSON: "image.json", OutPath: storePathFor(500, "p0")})
		res, err := PushWorkspace(context.Background(), ws, r.host, "n2c-many", PushOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	push(0)
	img, err := remote.Image(mustRef(t, r.host+"/n2c-many/web:latest"))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	if len(layers) != DefaultLayers {
		t.Fatalf("%d layers, want %d", len(layers), DefaultLayers)
	}
	var want []string
	for i := range n - DefaultLayers + 1 {
		want = append(want, storePathFor(500+i, fmt.Sprint("p", i)))
	}
	if got := layerStorePaths(t, layers[0]); !slices.Equal(got, want) {
		t.Errorf("merged layer holds %q, want %q", got, want)
	}
	r.reset()
	res := push(1)
	if got := r.uploads(); len(got) != 2 || !slices.Contains(got, res.Images["web"].ImageID) {
		t.Errorf("a changed top layer uploaded %q, want one layer and the config", got)
	}
}

// A budget of 40 is honoured; anything above is held to the ceiling.
func TestLayerBudgetIsHonouredUpToTheCeiling(t *testing.T) {
	closure := layeredClosure(120, 0)
	root := t.TempDir()
	writeClosure(t, root, closure)
	for budget, want := range map[int]int{40: 40, 41: CeilingLayers, 1000: CeilingLayers, 5: 5} {
		img, _, err := FromClosure(root, closure, closure[0].Path, nil, Options{MaxLayers: budget}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if layers, _ := img.Layers(); len(layers) != want {
			t.Errorf("budget %d: %d layers, want %d", budget, len(layers), want)
		}
	}
}
