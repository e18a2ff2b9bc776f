package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/nix2container"
)

var (
	n2cRoot  = storePathFor(30, "root")
	n2cTools = storePathFor(31, "tools")
	n2cTar   = storePathFor(32, "prebuilt-layer.tar.gz")
)

func n2cJSON(prebuiltDigest string) string {
	return `{
  "version": 1,
  "image-config": {"Entrypoint": ["/bin/hello"], "Env": ["A=b"], "ExposedPorts": {"5000/tcp": {}}, "WorkingDir": "/srv", "User": "1000"},
  "arch": "amd64",
  "created": null,
  "layers": [
    {"digest": "sha256:` + strings.Repeat("1", 64) + `", "size": 1, "diff_ids": "sha256:` + strings.Repeat("2", 64) + `",
     "mediatype": "application/vnd.oci.image.layer.v1.tar+gzip",
     "paths": [
       {"path": "` + n2cRoot + `", "options": {
          "rewrite": {"regex": "^/nix/store/[^/]+-root", "repl": ""},
          "perms": [{"regex": "/bin/hello$", "mode": "0750", "uid": 1000, "gid": 100, "uname": "app", "gname": "users"}],
          "ignoreDestination": "^/share/doc"}},
       {"path": "` + n2cTools + `"}
     ]},
    {"digest": "` + prebuiltDigest + `", "size": 1, "diff_ids": "", "mediatype": "application/vnd.oci.image.layer.v1.tar+gzip",
     "layer-path": "` + n2cTar + `", "History": {"created_by": "prebuilt"}}
  ]
}`
}

func n2cWorkspace(t *testing.T) (ws string, prebuilt []byte) {
	t.Helper()
	ws = t.TempDir()
	root := filepath.Join(ws, artifact.StoreRoot)
	makeStorePath(t, root, n2cRoot, map[string]file{
		"bin/hello":        {body: "hello", mode: 0o755},
		"share/doc/manual": {body: "manual"},
		"share/data":       {body: "data"},
	})
	makeStorePath(t, root, n2cTools, map[string]file{"bin/tool": {body: "tool", mode: 0o755}})
	prebuilt = gzipBytes(t, tarBytes(t, reg("etc/prebuilt", "from a tarball")))
	if err := os.WriteFile(filepath.Join(root, n2cTar), prebuilt, 0o444); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(prebuilt)
	if err := os.WriteFile(filepath.Join(ws, "image.json"), []byte(n2cJSON("sha256:"+hex.EncodeToString(h[:]))), 0o644); err != nil {
		t.Fatal(err)
	}
	var closure []artifact.StorePath
	for _, sp := range []string{n2cRoot, n2cTools, n2cTar} {
		closure = append(closure, artifact.StorePath{Path: sp, NarSize: 1, NarHash: narHashOf(t, root, sp)})
	}
	writeManifest(t, ws, artifact.ProcessOutput{Kind: artifact.KindNix2Container, Nix2ContainerJSON: "image.json", OutPath: n2cRoot, Closure: closure})
	return ws, prebuilt
}

func TestNix2ContainerImageHonoursPathOptions(t *testing.T) {
	ws, prebuilt := n2cWorkspace(t)
	r := newTestRegistry(t)
	res, err := PushWorkspace(context.Background(), ws, r.host, "n2c-app", PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(mustRef(t, r.host+"/n2c-app/web:latest"))
	if err != nil {
		t.Fatal(err)
	}
	checkHerokuImage(t, img)
	if id, _ := img.ConfigName(); id.String() != res.Images["web"].ImageID {
		t.Errorf("image ID %s, reported %s", id, res.Images["web"].ImageID)
	}
	cf, _ := img.ConfigFile()
	if !slices.Equal(cf.Config.Entrypoint, []string{"/bin/hello"}) || cf.Config.WorkingDir != "/srv" || cf.Config.User != "1000" {
		t.Errorf("config %+v", cf.Config)
	}
	if cf.History[1].CreatedBy != "prebuilt" {
		t.Errorf("history %+v", cf.History)
	}
	layers, _ := img.Layers()
	names, entries := layerEntries(t, layers[0])
	tools := strings.TrimPrefix(n2cTools, "/")
	want := []string{"bin/", "bin/hello", "nix/", "nix/store/", tools + "/", tools + "/bin/", tools + "/bin/tool", "share/", "share/data"}
	if !slices.Equal(names, want) {
		t.Errorf("layer 0 entries\n%q\nwant\n%q", names, want)
	}
	if e := entries["bin/hello"]; e.mode != 0o750 || e.uid != 1000 || e.uname != "app" {
		t.Errorf("perms not applied: %+v", e)
	}
	if e := entries["share/data"]; e.mode != 0o444 || e.uid != 0 {
		t.Errorf("perms applied where the regex does not match: %+v", e)
	}
	m, _ := img.Manifest()
	h := sha256.Sum256(prebuilt)
	if got := m.Layers[1].Digest.Hex; got != hex.EncodeToString(h[:]) {
		t.Errorf("prebuilt gzip layer was recompressed: %s", got)
	}

	// A second push reuses both layers without reading the store.
	if err := os.RemoveAll(filepath.Join(ws, artifact.StoreRoot)); err != nil {
		t.Fatal(err)
	}
	r.reset()
	res2, err := PushWorkspace(context.Background(), ws, r.host, "n2c-app", PushOptions{ReuseFrom: pinned(res)})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Images["web"] != res.Images["web"] {
		t.Errorf("second push made %+v, first %+v", res2.Images["web"], res.Images["web"])
	}
	if got := r.uploads(); len(got) != 0 {
		t.Errorf("second push uploaded %q", got)
	}
}

func TestParseNix2ContainerRefusesBadInput(t *testing.T) {
	good := n2cJSON("sha256:" + strings.Repeat("3", 64))
	if _, err := parseNix2Container([]byte(good), DefaultOptions()); err != nil {
		t.Fatalf("good JSON refused: %v", err)
	}
	for _, tc := range []struct {
		name, from, to, wantErr string
	}{
		{"a path outside the store", n2cTools, "/etc", "not a store path"},
		{"a store path with ..", n2cTools, n2cTools + "/../../etc", "not a store path"},
		{"a layer-path outside the store", n2cTar, "/etc/passwd", "not in the Nix store"},
		{"a layer-path climbing out", n2cTar, n2cTar + "/../../../etc/passwd", "not in the Nix store"},
		{"a bad regex", `[^/]+-root`, `[`, "rewrite regex"},
		{"a bad mode", `"0750"`, `"rwx"`, "invalid mode"},
		{"another architecture", `"arch": "amd64"`, `"arch": "arm64"`, "Heroku runs only amd64"},
		{"another version", `"version": 1`, `"version": 2`, "version 2"},
		{"a zstd layer", `"application/vnd.oci.image.layer.v1.tar+gzip",
     "layer-path"`, `"application/vnd.oci.image.layer.v1.tar+zstd",
     "layer-path"`, "only gzip"},
		{"not JSON", `"version"`, `version`, "parsing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(good, tc.from, tc.to, 1)
			if bad == good {
				t.Fatal("test did not change the JSON")
			}
			_, err := parseNix2Container([]byte(bad), DefaultOptions())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNix2ContainerPrebuiltLayerIsChecked(t *testing.T) {
	ws, _ := n2cWorkspace(t)
	evil := gzipBytes(t, tarBytes(t, reg("../../etc/passwd", "x")))
	if err := os.WriteFile(filepath.Join(ws, artifact.StoreRoot, n2cTar), evil, 0o444); err != nil {
		t.Fatal(err)
	}
	_, _, err := FromNix2Container(filepath.Join(ws, "image.json"), filepath.Join(ws, artifact.StoreRoot), nil, Options{}, nil)
	if err == nil || !strings.Contains(err.Error(), "climbs out") {
		t.Fatalf("error %v", err)
	}
}

// FuzzParseNix2Container is the one fuzz target of nix2container's JSON.
func FuzzParseNix2Container(f *testing.F) {
	f.Add([]byte(n2cJSON("sha256:" + strings.Repeat("3", 64))))
	f.Add([]byte(`{"version":1,"layers":[{"paths":[{"path":"/nix/store/00000000000000000000000000000000-x","options":{"perms":[{"regex":".*","mode":"7777"}]}}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The build's view (nix2container.Parse, StorePaths) and the push's
		// (the plan) of one document.
		if doc, err := nix2container.Parse(data); err == nil {
			paths, err := doc.StorePaths()
			for _, p := range paths {
				if err == nil && !artifact.IsStorePath(p) {
					t.Fatalf("StorePaths listed %q", p)
				}
			}
		}
		plan, err := parseNix2Container(data, Options{MaxLayers: 16, MaxEntries: 1000, MaxBytes: 1 << 20})
		if err != nil {
			return
		}
		for _, l := range plan.layers {
			for _, p := range l.paths {
				if !artifact.IsStorePath(p) {
					t.Fatalf("accepted %q", p)
				}
			}
			if l.layerPath != "" && (!strings.HasPrefix(l.layerPath, "/nix/store/") || strings.Contains(l.layerPath, "/../")) {
				t.Fatalf("accepted layer-path %q", l.layerPath)
			}
			for _, o := range l.opts {
				if o == nil {
					continue
				}
				for _, p := range o.perms {
					if p.mode > 0o7777 || p.orMode > 0o7777 {
						t.Fatalf("accepted mode %o", p.mode)
					}
				}
			}
		}
		if _, err := json.Marshal(plan.config); err != nil {
			t.Fatal(err)
		}
	})
}
