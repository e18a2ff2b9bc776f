package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
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

var (
	appPath = storePathFor(1, "app-1.0")
	libPath = storePathFor(2, "libfoo-2.3")
	etcPath = storePathFor(3, "app-config.json")
)

// sampleStore makes a small closure: an app with one program, a library it
// links to, and a store path that is a single file.
func sampleStore(t *testing.T) (string, []artifact.StorePath) {
	t.Helper()
	root := t.TempDir()
	makeStorePath(t, root, appPath, map[string]file{
		"bin/server":         {body: "#!server\n", mode: 0o755},
		"share/doc/README":   {body: "read me\n"},
		"lib/libfoo.so":      {link: libPath + "/lib/libfoo.so.2"},
		"share/empty":        {dir: true},
		"share/doc/relative": {link: "../../bin/server"},
	})
	makeStorePath(t, root, libPath, map[string]file{
		"lib/libfoo.so.2": {body: strings.Repeat("library ", 1000)},
	})
	if err := os.WriteFile(filepath.Join(root, etcPath), []byte(`{"port":5000}`), 0o444); err != nil {
		t.Fatal(err)
	}
	return root, sampleStoreClosure(t, root)
}

func TestClosureImageIsPushedAndPulledBackAsDockerSchema2(t *testing.T) {
	root, closure := sampleStore(t)
	img, _, err := FromClosure(root, closure, appPath, nil, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRegistry(t)
	got, err := Push(context.Background(), map[string]v1.Image{"web": img}, r.host, "my-app")
	if err != nil {
		t.Fatal(err)
	}
	wantID, _ := img.ConfigName()
	wantDigest, _ := img.Digest()
	if got["web"].ImageID != wantID.String() || got["web"].Digest != wantDigest.String() {
		t.Fatalf("Push returned %+v, want image ID %s and digest %s", got["web"], wantID, wantDigest)
	}

	pulled, err := remote.Image(mustRef(t, r.host+"/my-app/web:latest"))
	if err != nil {
		t.Fatal(err)
	}
	checkHerokuImage(t, pulled)
	if id, _ := pulled.ConfigName(); id != wantID {
		t.Errorf("pulled image ID %s, pushed %s", id, wantID)
	}
	cf, err := pulled.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{appPath + "/bin/server"}; !slices.Equal(cf.Config.Entrypoint, want) {
		t.Errorf("entrypoint %q, want %q", cf.Config.Entrypoint, want)
	}
	if want := []string{"PATH=" + appPath + "/bin:/usr/bin:/bin"}; !slices.Equal(cf.Config.Env, want) {
		t.Errorf("env %q, want %q", cf.Config.Env, want)
	}
	if !cf.Created.Time.Equal(epoch) {
		t.Errorf("created %s", cf.Created)
	}
	// Every layer is recorded for reuse, under its store path and the
	// NAR hash its content was checked against.
	for _, sp := range closure {
		if !strings.Contains(cf.Config.Labels[LayersLabel], `"key":"`+narKey(sp.Path, sp.NarHash)+`"`) {
			t.Errorf("layer record %q does not name %s with its NAR hash", cf.Config.Labels[LayersLabel], sp.Path)
		}
	}

	layers, err := pulled.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 3 {
		t.Fatalf("%d layers, want one per store path", len(layers))
	}
	// Largest narSize first (without references, none is more depended on
	// than another): lib, the config file; the output on top.
	for i, sp := range []string{libPath, etcPath, appPath} {
		if !strings.Contains(cf.History[i].CreatedBy, sp) {
			t.Errorf("layer %d history %q, want %s", i, cf.History[i].CreatedBy, sp)
		}
	}
	names, entries := layerEntries(t, layers[2])
	rel := strings.TrimPrefix(appPath, "/")
	wantNames := []string{"nix/", "nix/store/", rel + "/", rel + "/bin/", rel + "/bin/server", rel + "/lib/", rel + "/lib/libfoo.so",
		rel + "/share/", rel + "/share/doc/", rel + "/share/doc/README", rel + "/share/doc/relative", rel + "/share/empty/"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("layer entries\n%q\nwant\n%q", names, wantNames)
	}
	for n, want := range map[string]layerEntry{
		"nix/":                      {typ: '5', mode: 0o755, mtime: 1},
		rel + "/":                   {typ: '5', mode: 0o555, mtime: 1},
		rel + "/bin/server":         {typ: '0', mode: 0o555, body: "#!server\n", mtime: 1},
		rel + "/share/doc/README":   {typ: '0', mode: 0o444, body: "read me\n", mtime: 1},
		rel + "/lib/libfoo.so":      {typ: '2', mode: 0o777, link: libPath + "/lib/libfoo.so.2", mtime: 1},
		rel + "/share/doc/relative": {typ: '2', mode: 0o777, link: "../../bin/server", mtime: 1},
	} {
		if got := entries[n]; got != want {
			t.Errorf("%s: %+v, want %+v", n, got, want)
		}
	}
	names, entries = layerEntries(t, layers[1])
	if want := []string{"nix/", "nix/store/", strings.TrimPrefix(etcPath, "/")}; !slices.Equal(names, want) {
		t.Errorf("single-file store path layer: %q, want %q", names, want)
	}
	if e := entries[strings.TrimPrefix(etcPath, "/")]; e.body != `{"port":5000}` || e.mode != 0o444 {
		t.Errorf("single-file store path: %+v", e)
	}
}

// Without references every path is as depended-on as any other: the
// largest get layers of their own, the rest share one under the output.
func TestClosureMergesTheSmallestStorePathsUnderTheOutput(t *testing.T) {
	root := t.TempDir()
	var closure []artifact.StorePath
	for i := range 6 {
		sp := storePathFor(10+i, fmt.Sprintf("p%d", i))
		makeStorePath(t, root, sp, map[string]file{"f": {body: sp}})
		closure = append(closure, artifact.StorePath{Path: sp, NarSize: int64(1000 - i)})
	}
	img, _, err := FromClosure(root, closure, closure[0].Path, []string{"/bin/true"}, Options{MaxLayers: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	if len(layers) != 3 {
		t.Fatalf("%d layers, want 3", len(layers))
	}
	for i, want := range [][]string{{closure[1].Path}, {closure[2].Path, closure[3].Path, closure[4].Path, closure[5].Path}, {closure[0].Path}} {
		if got := layerStorePaths(t, layers[i]); !slices.Equal(got, want) {
			t.Errorf("layer %d holds %q, want %q", i, got, want)
		}
	}
}

// layerStorePaths lists the store paths a layer holds.
func layerStorePaths(t *testing.T, l v1.Layer) []string {
	t.Helper()
	names, _ := layerEntries(t, l)
	var got []string
	for _, n := range names {
		if strings.Count(n, "/") == 3 && strings.HasSuffix(n, "/") {
			got = append(got, "/"+strings.TrimSuffix(n, "/"))
		}
	}
	return got
}

func TestClosureEntrypoint(t *testing.T) {
	root, closure := sampleStore(t)
	two := storePathFor(9, "two-programs")
	makeStorePath(t, root, two, map[string]file{"bin/a": {body: "a", mode: 0o755}, "bin/b": {body: "b", mode: 0o755}})
	closure = append(closure, artifact.StorePath{Path: two, NarSize: 1})
	for _, tc := range []struct {
		name    string
		out     string
		command []string
		want    []string
		wantErr string
	}{
		{"a relative command is taken inside the output", appPath, []string{"bin/server", "--port", "$PORT"}, []string{appPath + "/bin/server", "--port", "$PORT"}, ""},
		{"an absolute command is kept", appPath, []string{"/bin/sh", "-c", "x"}, []string{"/bin/sh", "-c", "x"}, ""},
		{"a bare name found in the output's bin is made absolute", appPath, []string{"server"}, []string{appPath + "/bin/server"}, ""},
		{"a bare name not in the output is left to PATH", appPath, []string{"sh"}, []string{"sh"}, ""},
		{"no command takes the output's only program", appPath, nil, []string{appPath + "/bin/server"}, ""},
		{"no command with two programs asks for one", two, nil, nil, "holds 2 programs (a, b): set the process's command"},
		{"no command and no bin asks for one", libPath, nil, nil, "has no bin/ directory"},
		{"a command climbing out of the output is refused", appPath, []string{"../x/bin/y"}, nil, "outside the output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, _, err := FromClosure(root, closure, tc.out, tc.command, Options{}, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cf, _ := img.ConfigFile()
			if !slices.Equal(cf.Config.Entrypoint, tc.want) {
				t.Errorf("entrypoint %q, want %q", cf.Config.Entrypoint, tc.want)
			}
		})
	}
}

func TestClosureRefusesBadInput(t *testing.T) {
	root, closure := sampleStore(t)
	fifo := storePathFor(20, "fifo")
	makeStorePath(t, root, fifo, nil)
	if err := mkfifo(filepath.Join(root, fifo, "pipe")); err != nil {
		t.Skip("no mkfifo:", err)
	}
	outside := storePathFor(21, "escape")
	if err := os.MkdirAll(filepath.Join(root, "nix/store"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A store path that is a symlink out of the store root is kept as a
	// symlink, never followed; a store *directory* that is a link out of
	// the root cannot be read through.
	if err := os.Symlink("/etc", filepath.Join(root, outside)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		closure []artifact.StorePath
		out     string
		wantErr string
	}{
		{"a path outside the store", append(closure, artifact.StorePath{Path: "/etc/passwd"}), appPath, "not a store path"},
		{"a store path twice", append(closure, closure[0]), appPath, "twice"},
		{"an output outside the closure", closure, storePathFor(99, "x"), "does not include the output"},
		{"a FIFO in a store path", append(closure, artifact.StorePath{Path: fifo}), appPath, "store paths hold only files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := FromClosure(root, tc.closure, tc.out, []string{"x"}, Options{}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	img, _, err := FromClosure(root, append(closure, artifact.StorePath{Path: outside}), appPath, nil, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	var e layerEntry
	for _, l := range layers {
		if _, entries := layerEntries(t, l); entries[strings.TrimPrefix(outside, "/")].typ != 0 {
			e = entries[strings.TrimPrefix(outside, "/")]
		}
	}
	if e.typ != '2' || e.link != "/etc" {
		t.Errorf("store path that is a symlink: %+v, want the symlink itself", e)
	}
}

func TestClosureImageIsReproducible(t *testing.T) {
	root, closure := sampleStore(t)
	a, _, err := FromClosure(root, closure, appPath, nil, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The same tree copied elsewhere with other permissions and mtimes.
	root2, _ := sampleStore(t)
	os.Chmod(filepath.Join(root2, appPath, "share/doc/README"), 0o600)
	reversed := slices.Clone(closure)
	slices.Reverse(reversed)
	b, _, err := FromClosure(root2, reversed, appPath, nil, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ida, _ := a.ConfigName()
	idb, _ := b.ConfigName()
	if ida != idb {
		t.Errorf("image IDs differ: %s, %s", ida, idb)
	}
}

const reproEnv = "HEROKUNIX_TEST_REPRO_ROOT"

// TestClosureImageIsReproducibleAcrossProcesses builds the same closure in
// this process and in a child process (this test binary run again) and
// compares image IDs and layer digests.
func TestClosureImageIsReproducibleAcrossProcesses(t *testing.T) {
	if root := os.Getenv(reproEnv); root != "" {
		closure := sampleStoreClosure(t, root)
		img, _, err := FromClosure(root, closure, appPath, nil, Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("RESULT", imageFingerprint(t, img))
		return
	}
	root, closure := sampleStore(t)
	img, _, err := FromClosure(root, closure, appPath, nil, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := imageFingerprint(t, img)

	cmd := exec.Command(os.Args[0], "-test.run=^TestClosureImageIsReproducibleAcrossProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), reproEnv+"="+root)
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

// sampleStoreClosure is the closure of the store sampleStore made at root.
func sampleStoreClosure(t *testing.T, root string) []artifact.StorePath {
	return []artifact.StorePath{
		{Path: appPath, NarSize: 500, NarHash: narHashOf(t, root, appPath)},
		{Path: libPath, NarSize: 9000, NarHash: narHashOf(t, root, libPath)},
		{Path: etcPath, NarSize: 100, NarHash: narHashOf(t, root, etcPath)},
	}
}

func imageFingerprint(t *testing.T, img v1.Image) string {
	t.Helper()
	id, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	parts := []string{id.String()}
	for _, l := range m.Layers {
		parts = append(parts, l.Digest.String())
	}
	return strings.Join(parts, " ")
}
